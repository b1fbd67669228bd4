"""`hps validate` refuses every config the server refuses at load (issue 15, item 6): it runs the
server's own checks (check_config_loadable), so the two cannot drift apart."""

import json

import pytest

import hps
from hps.cli import main

from conftest import config_for, make_table


def _write(tmp_path, config: dict) -> str:
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(config))
    return str(path)


def _cases(tmp_path):
    t = make_table(tmp_path / "t", 50, 4)
    base = config_for([t])
    redis = dict(base, volatile_db={"type": "redis_cluster"})
    kafka = dict(base, update_source={"type": "kafka_message_queue", "brokers": "localhost:9092"})
    # With the consumer built, Kafka is refused only over a read-only persistent_db (nowhere to keep updates).
    kafka_read_only = config_for([t], persistent=str(tmp_path / "db"))
    kafka_read_only["persistent_db"]["read_only"] = True
    kafka_read_only["update_source"] = {"type": "kafka_message_queue", "brokers": "localhost:9092"}
    no_tier = dict(base, volatile_db={"type": "disabled"})
    read_only = config_for([t], persistent=str(tmp_path / "never_built"))
    read_only["persistent_db"]["read_only"] = True
    no_parent = config_for([t], persistent=str(tmp_path / "missing" / "parent" / "db"))
    return {"redis_cluster": (redis, "redis_cluster"), "kafka": (kafka, "kafka"),
            "kafka over a read-only persistent_db": (kafka_read_only, "writable persistent_db"),
            "no tier": (no_tier, "no tier would hold the rows"),
            "read_only without a database": (read_only, "no RocksDB database"),
            "missing parent folder": (no_parent, "does not exist")}


# What a build refuses depends on what it was built with: a missing backend only where it is missing.
_BUILT = hps.build_features()
CASES = ((["redis_cluster"] if not _BUILT["redis"] else []) +
         (["kafka over a read-only persistent_db"] if _BUILT["kafka"] else ["kafka"]) +
         ["no tier", "read_only without a database", "missing parent folder"])


@pytest.mark.parametrize("case", CASES)
def test_server_and_validate_refuse_alike(tmp_path, capsys, case):
    config, words = _cases(tmp_path)[case]
    if "persistent_db" in config and not hps.rocksdb_available():
        pytest.skip("this build has no RocksDB")
    path = _write(tmp_path, config)
    try:
        hps.Config(path)
    except hps.ConfigError as error:  # a build that refuses it while parsing already agrees
        pytest.skip(f"refused by the parser: {error}")
    with pytest.raises(hps.HpsError, match=words):
        hps.HPS(path)
    for args in ([path], [path, "--no-files"]):
        status = main(["validate", *args])
        err = capsys.readouterr().err
        assert status == 1, f"hps validate {args} answered {status}, expected 1; stderr: {err}"
        assert words in err, f"expected {words!r} in: {err}"


def test_server_does_not_create_what_validate_refused(tmp_path):
    # The missing parent stays missing: neither the check nor the refused load creates folders.
    config, _ = _cases(tmp_path)["missing parent folder"]
    if not hps.rocksdb_available():
        pytest.skip("this build has no RocksDB")
    with pytest.raises(hps.ConfigError):
        hps.HPS(config)
    assert not (tmp_path / "missing").exists()


def test_validate_accepts_what_loads(tmp_path, capsys):
    t = make_table(tmp_path / "t", 50, 4)
    path = _write(tmp_path, config_for([t]))
    assert main(["validate", path]) == 0, capsys.readouterr().err
    with hps.HPS(path) as ps:
        assert ps.lookup("m", 0, t.keys[:3]).shape == (3, 4)


def test_a_database_folder_this_process_cannot_write_is_refused_by_validate_and_load_alike(tmp_path):
    # validate used to pass it (only the parent folder's existence was checked) and the load then
    # failed with a StorageError from RocksDB. Root passes every permission check, so the commands
    # run without the capability that lets it (setpriv), as a plain user would.
    import os
    import subprocess
    import sys

    t = make_table(tmp_path / "t", 50, 4)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0o555)
    path = _write(tmp_path, config_for([t], persistent=str(tmp_path / "locked" / "db")))
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    prefix = drop if os.geteuid() == 0 else []
    for command in (["validate", path, "--no-files"], ["lookup", path, "--model", "m", "--table", "0", "--keys", "1"]):
        run = subprocess.run(prefix + [sys.executable, "-m", "hps", *command], capture_output=True, text=True)
        assert run.returncode == 1, (command, run.stdout, run.stderr)
        assert f"persistent_db.path: this process cannot write to '{tmp_path / 'locked'}'" in run.stderr, run.stderr

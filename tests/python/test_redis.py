"""volatile_db on a real Redis Cluster (started here, stopped by pid): loading, load markers, two
processes sharing one table, promotion from RocksDB, metrics, and clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hps
from conftest import config_for, make_table, mixed_queries
from redis_cluster import LocalRedis, free_ports, redis_installed

pytestmark = [
    pytest.mark.skipif(not hps.redis_available(), reason="this build has no Redis Cluster tier"),
    pytest.mark.skipif(not redis_installed(), reason="redis-server is not installed"),
]


@pytest.fixture(scope="module")
def cluster():
    # A long node timeout: no spurious failovers on a busy machine (no test here kills a node).
    with LocalRedis(masters=3, replicas=1, node_timeout_ms=5000) as c:
        yield c


_models = iter(range(10**6))


def redis_config(tables, cluster, **volatile):
    # A model name of its own per test: the tests share one cluster.
    config = config_for(tables, model=f"m{next(_models)}")
    config["volatile_db"] = {"type": "redis_cluster", "address": cluster.address, "num_partitions": 5,
                             "max_batch_size": 500, **volatile}
    return config


def test_lookups_match_the_files(tmp_path, cluster):
    t = make_table(tmp_path / "t", 3000, 16, default=-1.0)
    config = redis_config([t], cluster)
    model = config["models"][0]["model"]
    with hps.HPS(config) as ps:
        q = mixed_queries(t, (4, 1000), seed=3)
        np.testing.assert_array_equal(ps.lookup(model, 0, q), t.expected(q))
        (s,) = ps.stats()
        assert s["hits"]["volatile_db"] == int(np.isin(q, t.keys).sum())
        assert s["tier_rows"]["volatile_db"] == 3000
        # The tier's fault counters, through the generic per-tier counters of stats() and prometheus().
        counters = s["tier_counters"]["volatile_db"]
        assert counters["fallthrough_keys"] == 0 and counters["timeouts"] == 0
        assert set(counters) >= {"fallthrough_keys", "timeouts", "moved_redirects", "reconnects"}
        assert s["tier_counters"]["persistent_db"] == {} and s["tier_counters"]["gpu_cache"] == {}
        text = ps.prometheus()
        labels = f'model="{model}",table="sparse_embedding0",tier="volatile_db"'
        assert f"hps_tier_fallthrough_keys_total{{{labels}}} 0" in text
        assert f"hps_tier_reconnects_total{{{labels}}} " in text
        new = np.full((2, 16), 3.5, np.float32)
        ps.update(model, 0, t.keys[:2], new)
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[:2]), new)
        assert ps.erase(model, 0, t.keys[2:4]) == 2
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[2:4]), np.full((2, 16), -1.0, np.float32))


def hmgets_of_lookup(cluster, config, table, lookup_threads: int) -> int:
    """HMGETs the cluster's nodes ran for one lookup of all of `table`'s keys (INFO commandstats,
    reset before it); the rows are checked against the files."""
    model = config["models"][0]["model"]
    with hps.HPS(config, lookup_threads=lookup_threads) as ps:
        for port in cluster.ports:
            cluster.cli(port, "CONFIG", "RESETSTAT")
        np.testing.assert_array_equal(ps.lookup(model, 0, table.keys), table.rows)
        total = 0
        for port in cluster.ports:
            m = re.search(r"^cmdstat_hmget:calls=(\d+),", cluster.cli(port, "INFO", "commandstats"), re.M)
            total += int(m.group(1)) if m else 0
    return total


def test_a_lookup_asks_for_at_most_256_kib_of_rows_per_command(tmp_path, cluster):
    # max_batch_size allows one HMGET for all 4,000 keys (one partition, one lookup thread: one
    # chunk); rows of 512 bytes make that 2 MB of reply, which Redis would build in full before
    # sending any of it: the lookup splits it instead.
    n, dim = 4000, 128
    t = make_table(tmp_path / "t", n, dim)
    calls = hmgets_of_lookup(cluster, redis_config([t], cluster, num_partitions=1, max_batch_size=65536), t, 1)
    assert calls >= -(-n * dim * 4 // (256 << 10)), f"{calls} HMGETs for {n} rows of {dim * 4} bytes"
    assert calls <= 2 * -(-n * dim * 4 // (256 << 10)), f"{calls} HMGETs: commands smaller than needed"


def test_a_lookup_is_one_command_per_partition_whatever_the_lookup_threads(tmp_path, cluster):
    # The tier pipelines every node from one call: the server does not split a Redis lookup over
    # its lookup threads (which sent each partition one HMGET per chunk: 8 chunks of 2,000 keys
    # with 2 threads, 40 HMGETs instead of 5).
    t = make_table(tmp_path / "t", 2000, 16)
    # 5 partitions, max_batch_size 500: about 400 keys per partition, one HMGET each.
    calls = hmgets_of_lookup(cluster, redis_config([t], cluster), t, lookup_threads=2)
    assert calls == 5, f"{calls} HMGETs for 2,000 keys in 5 partitions"


def test_reloading_keeps_the_table_and_its_updates(tmp_path, cluster):
    t = make_table(tmp_path / "t", 1000, 4)
    config = redis_config([t], cluster)
    model = config["models"][0]["model"]
    new = np.full((3, 4), 9.0, np.float32)
    with hps.HPS(config) as ps:
        ps.update(model, 0, t.keys[:3], new)
    # Same files: the cluster's copy is current (its load marker says so) and is not rewritten.
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[:3]), new)
    # New files: the table is replaced.
    t2 = make_table(tmp_path / "t", 800, 4, seed=5)
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup(model, 0, t2.keys), t2.rows)
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 800


SECOND_SERVER = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import hps
    config, model, update_keys, read_keys = json.loads(sys.stdin.read())
    with hps.HPS(config) as ps:
        ps.update(model, 0, np.array(update_keys, np.int64), np.full((len(update_keys), 8), 42.0, np.float32))
        print(json.dumps(ps.lookup(model, 0, np.array(read_keys, np.int64)).tolist()))
""")


def test_two_processes_share_one_table(tmp_path, cluster):
    t = make_table(tmp_path / "t", 2000, 8)
    config = redis_config([t], cluster)
    model = config["models"][0]["model"]
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[:50]), t.rows[:50])
        mine = np.full((5, 8), -7.0, np.float32)
        ps.update(model, 0, t.keys[10:15], mine)
        # Another server process on the same cluster: it sees this one's update, and its update is
        # seen here.
        args = [config, model, t.keys[:5].tolist(), t.keys[5:15].tolist()]
        out = subprocess.run([sys.executable, "-c", SECOND_SERVER], input=json.dumps(args), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        theirs = np.array(json.loads(out.stdout), np.float32)
        np.testing.assert_array_equal(theirs[:5], t.rows[5:10])
        np.testing.assert_array_equal(theirs[5:], mine)
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[:5]), np.full((5, 8), 42.0, np.float32))


def test_a_server_with_another_num_partitions_reads_the_table_as_stored(tmp_path, cluster):
    # The table's load marker records the partitions it was written with; a server configured with
    # another count reads (and updates) it under the stored one instead of finding nothing.
    t = make_table(tmp_path / "t", 2000, 8)
    config = redis_config([t], cluster, num_partitions=5)
    model = config["models"][0]["model"]
    other = json.loads(json.dumps(config))
    other["volatile_db"]["num_partitions"] = 2
    with hps.HPS(config) as writer, hps.HPS(other) as reader:
        np.testing.assert_array_equal(reader.lookup(model, 0, t.keys), t.rows)
        assert reader.stats()[0]["tier_rows"]["volatile_db"] == 2000
        assert reader.stats()[0]["defaults"] == 0
        mine = np.full((5, 8), 3.5, np.float32)
        reader.update(model, 0, t.keys[:5], mine)
        np.testing.assert_array_equal(writer.lookup(model, 0, t.keys[:5]), mine)


@pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB tier")
def test_promotion_from_rocksdb_into_redis(tmp_path, cluster):
    t = make_table(tmp_path / "t", 3000, 8, default=0.5)
    config = redis_config([t], cluster, initial_cache_rate=0.1, cache_missed_embeddings=True)
    config["persistent_db"] = {"type": "rocks_db", "path": str(tmp_path / "db")}
    model = config["models"][0]["model"]
    with hps.HPS(config) as ps:
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 300
        q = mixed_queries(t, (2000,), seed=4)
        np.testing.assert_array_equal(ps.lookup(model, 0, q), t.expected(q))
        assert ps.stats()[0]["promoted_keys"] > 0
        np.testing.assert_array_equal(ps.lookup(model, 0, q), t.expected(q))
        assert ps.stats()[0]["tier_rows"]["volatile_db"] > 300


def test_unreachable_seeds_are_a_clear_error(tmp_path):
    t = make_table(tmp_path / "t", 10, 4)
    ports = free_ports(2)
    config = config_for([t])
    config["volatile_db"] = {"type": "redis_cluster", "address": f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}",
                             "operation_timeout_ms": 300}
    with pytest.raises(hps.BackendUnavailableError, match=f"cannot connect to 127.0.0.1:{ports[0]}"):
        hps.HPS(config)


def test_wrong_password_and_plain_redis_are_clear_errors(tmp_path):
    t = make_table(tmp_path / "t", 10, 4)
    with LocalRedis(masters=0, password="s3cret") as plain:
        config = config_for([t])
        config["volatile_db"] = {"type": "redis_cluster", "address": plain.address, "password": "nope"}
        with pytest.raises(hps.BackendUnavailableError, match="AUTH as user 'default' refused"):
            hps.HPS(config)
        config["volatile_db"]["password"] = "s3cret"
        with pytest.raises(hps.BackendUnavailableError, match="without cluster mode"):
            hps.HPS(config)


def test_tls_is_refused_by_the_parser(tmp_path):
    t = make_table(tmp_path / "t", 10, 4)
    config = config_for([t])
    config["volatile_db"] = {"type": "redis_cluster", "enable_tls": True}
    with pytest.raises(hps.ConfigError, match="enable_tls"):
        hps.Config(config)


LOADER = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import hps
    config, model, keys = json.loads(sys.stdin.read())
    with hps.HPS(config) as ps:
        print(json.dumps(ps.lookup(model, 0, np.array(keys, np.int64)).tolist()))
""")


def test_servers_starting_together_load_a_table_once(tmp_path, cluster):
    t = make_table(tmp_path / "t", 20000, 8)
    config = redis_config([t], cluster)
    model = config["models"][0]["model"]
    payload = json.dumps([config, model, t.keys[::97].tolist()])
    procs = [subprocess.Popen([sys.executable, "-c", LOADER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(payload, timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        # Every row right in both, though one cleared and loaded while the other started.
        np.testing.assert_array_equal(np.array(json.loads(out), np.float32), t.rows[::97])
    with hps.HPS(config) as ps:
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 20000


def test_a_redis_only_table_larger_than_its_bound_is_refused(tmp_path, cluster):
    # Like the hash map: without a persistent_db, each partition must hold its share of the keys,
    # checked before any row is stored (600 keys over 5 partitions of 100: one gets more than 100).
    t = make_table(tmp_path / "t", 600, 4)
    config = redis_config([t], cluster, overflow_margin=100)
    with pytest.raises(hps.ConfigError, match=r"the table's 600 rows put \d+ distinct keys in partition \d of the "
                                              r"Redis table's 5 .* overflow_margin 100"):
        hps.HPS(config)
    model = config["models"][0]["model"]
    stored = [cluster.cli(port, "--scan", "--pattern", f"*hps_et.{model}.*/p*v") for port in cluster.ports]
    assert not "".join(stored).strip(), f"rows were stored before the refusal: {stored}"


def test_a_redis_only_table_refuses_an_update_it_has_no_room_for_and_loses_no_row(tmp_path, cluster):
    # Without a persistent_db the cluster holds the only copy: an update past overflow_margin used
    # to evict stored rows (to overflow_resolution_target of the margin) to make room.
    t = make_table(tmp_path / "t", 300, 4, default=-7.0)
    config = redis_config([t], cluster, overflow_margin=100)  # 5 partitions: 500 rows at most
    model = config["models"][0]["model"]
    with hps.HPS(config) as ps:
        new_keys = np.arange(10**6, 10**6 + 400, dtype=np.int64)  # 700 rows: some partition runs out of room
        with pytest.raises(hps.OutOfMemoryError, match="nothing of this write was stored"):
            ps.update(model, 0, new_keys, np.ones((400, 4), np.float32))
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys), t.rows)
        np.testing.assert_array_equal(ps.lookup(model, 0, new_keys), np.full((400, 4), -7.0, np.float32))
        (s,) = ps.stats()
        assert s["tier_rows"]["volatile_db"] == 300
        assert s["tier_counters"]["volatile_db"]["evicted_rows"] == 0
        ps.update(model, 0, t.keys[:50], np.ones((50, 4), np.float32))  # updates take no room
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[:50]), np.ones((50, 4), np.float32))


@pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB tier")
def test_a_read_only_store_is_the_source_of_its_marker(tmp_path, cluster):
    t = make_table(tmp_path / "t", 1000, 4)
    config = redis_config([t], cluster)
    config["persistent_db"] = {"type": "rocks_db", "path": str(tmp_path / "db")}
    model = config["models"][0]["model"]
    with hps.HPS(config) as ps:  # builds the database (and fills the cluster from the files)
        pass
    config["persistent_db"]["read_only"] = True
    with hps.HPS(config) as ps:  # the cluster is filled from the read-only store
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys), t.rows)
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 1000
        new = np.full((2, 4), 6.0, np.float32)
        with pytest.raises(hps.HpsError):  # a read-only store refuses updates
            ps.update(model, 0, t.keys[:2], new)
    # The files are not needed: the store is the source, and the cluster's marker names it, so a
    # second start finds the cluster current.
    for f in (tmp_path / "t").iterdir():
        f.unlink()
    with hps.HPS(config) as ps:
        np.testing.assert_array_equal(ps.lookup(model, 0, t.keys[:100]), t.rows[:100])
        assert ps.stats()[0]["tier_rows"]["volatile_db"] == 1000

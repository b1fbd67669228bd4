"""Streaming updates through a real Kafka-protocol broker (tansu on 127.0.0.1, started and stopped
here by process id): hps.UpdatePublisher -> topics -> the server's consumer -> every tier -> lookups.

Every wait polls with a deadline (kafka_broker.wait_until); no sleep is an assertion."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import hps
from conftest import config_for, make_table
from kafka_broker import Broker, Proxy, wait_until
from redis_cluster import LocalRedis, redis_installed

import confluent_kafka  # installed by scripts/setup.sh --test, like the broker: these tests always run
import confluent_kafka.admin

needs_rocksdb = pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB tier")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


def kafka_config(tables, brokers: str, **kw) -> dict:
    config = config_for(tables, **kw)
    # Fast topic discovery and applying for tests; the defaults are HugeCTR's.
    config["update_source"] = {"type": "kafka_message_queue", "brokers": brokers,
                               "metadata_refresh_interval_ms": 200, "poll_timeout_ms": 50,
                               "failure_backoff_ms": 50}
    return config


def source_stats(ps) -> dict:
    (stats,) = ps.update_source_stats()
    return stats


def sees(ps, model, table, keys, rows) -> bool:
    return np.array_equal(ps.lookup(model, table, keys), np.asarray(rows, np.float32))


def raw_producer(brokers: str):
    return confluent_kafka.Producer({"bootstrap.servers": brokers, "linger.ms": 0})


def hugectr_message(keys, rows, key_format="<q") -> bytes:
    """A message packed by hand the way HugeCTR's KafkaMessageSink lays it out."""
    rows = np.asarray(rows, np.float32)
    out = struct.pack("<4sI", b"HCTR", rows.shape[1] * 4)
    for k, r in zip(keys, rows):
        out += struct.pack(key_format, int(k)) + struct.pack(f"<{rows.shape[1]}f", *r.tolist())
    return out


@pytest.mark.parametrize("key_bits", [64, 32])
def test_round_trip_publisher_to_lookup(tmp_path, broker, key_bits):
    low, high = (-10**12, 10**12) if key_bits == 64 else (0, 2**32 - 1)
    table = make_table(tmp_path / "t0", 500, 8, key_low=low, key_high=high)
    config = kafka_config([table], broker.brokers, embedding_table_names=["items"])
    config["supportlonglong"] = key_bits == 64
    rng = np.random.default_rng(3)
    new_keys = np.array([high - 1, high - 2, low + 1], np.int64)  # absent from the files
    keys = np.concatenate([table.keys[:100], new_keys])
    rows = rng.standard_normal((keys.size, 8), dtype=np.float32)
    with hps.HPS(config) as ps, hps.UpdatePublisher(broker.brokers, "m", key_bits=key_bits, partitions=3) as pub:
        assert not sees(ps, "m", "items", keys, rows)
        pub.publish("items", keys, rows)
        pub.flush()
        wait_until(lambda: sees(ps, "m", "items", keys, rows), "the published rows are served")
        stats = source_stats(ps)
        assert stats["name"] == f"kafka:{broker.brokers}"
        assert stats["rows"] == keys.size and stats["errors"] == 0, stats
        assert 1 <= stats["received"] <= pub.messages
        wait_until(lambda: source_stats(ps)["lag"] == 0, "the lag reaches 0")
        # Untouched keys keep their rows; a second update of the same keys wins.
        np.testing.assert_array_equal(ps.lookup("m", "items", table.keys[200:210]), table.rows[200:210])
        pub.publish("items", keys[:5], rows[:5] + 1)
        pub.flush()
        wait_until(lambda: sees(ps, "m", "items", keys[:5], rows[:5] + 1), "the second update is served")
        text = ps.prometheus()
        assert f'hps_update_source_rows_total{{source="kafka:{broker.brokers}"}} {keys.size + 5}' in text
        assert f'hps_update_source_errors_total{{source="kafka:{broker.brokers}"}} 0' in text


def test_a_message_packed_by_hand_in_hugectr_format(tmp_path, broker):
    table = make_table(tmp_path / "t0", 100, 4)
    keys = np.array([table.keys[0], 77, -5], np.int64)
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    producer = raw_producer(broker.brokers)
    with hps.HPS(kafka_config([table], broker.brokers, embedding_table_names=["emb"])) as ps:
        producer.produce("hps_et.m.emb", value=hugectr_message(keys, rows))
        assert producer.flush(10) == 0
        wait_until(lambda: sees(ps, "m", "emb", keys, rows), "the hand-packed rows are served")
    # And the publisher writes exactly HugeCTR's bytes.
    assert hps.publisher.pack_message(keys, rows) == hugectr_message(keys, rows)
    assert hps.publisher.pack_message(np.array([1, -1]), rows[:2], key_bits=32) == \
        hugectr_message([1, 2**32 - 1], rows[:2], key_format="<I")


def test_malformed_messages_are_counted_and_skipped(tmp_path, broker, capfd):
    table = make_table(tmp_path / "t0", 100, 8)
    producer = raw_producer(broker.brokers)
    good = np.full((1, 8), 9.0, np.float32)
    with hps.HPS(kafka_config([table], broker.brokers, embedding_table_names=["emb"])) as ps:
        # A topic of the model that names no table: reported once, not consumed.
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker.brokers})
        admin.create_topics([confluent_kafka.admin.NewTopic("hps_et.m.nosuch", 1, 1)])["hps_et.m.nosuch"].result(10)
        wait_until(lambda: "unknown topic hps_et.m.nosuch" in source_stats(ps)["last_error"], "the unknown topic")
        bad = [b"XCTR" + hugectr_message([1], good)[4:],          # wrong magic
               hugectr_message([1], np.ones((1, 4), np.float32)),  # value size of dim 4, table has 8
               hugectr_message([1, 2], np.ones((2, 8)))[:-3],       # truncated pair
               b"HCT"]                                             # shorter than the header
        for value in bad:
            producer.produce("hps_et.m.emb", value=value, partition=0)
        producer.produce("hps_et.m.emb", value=hugectr_message([5], good), partition=0)
        assert producer.flush(10) == 0
        wait_until(lambda: sees(ps, "m", "emb", [5], good), "the good message after the bad ones is applied")
        stats = source_stats(ps)
        assert stats["errors"] == 1 + len(bad), stats
        assert stats["received"] == len(bad) + 1 and stats["rows"] == 1
        assert stats["last_error"] == ("skipped message (topic hps_et.m.emb, partition 0, offset 3): message of 3 "
                                       "bytes is shorter than its 8-byte header"), stats
        assert sees(ps, "m", "emb", [1], table.expected([1]))  # nothing of the bad messages landed
    err = capfd.readouterr().err
    assert "hps kafka: " in err


def test_update_filters_follow_model_names(tmp_path, broker):
    a = make_table(tmp_path / "a", 50, 4, seed=1)
    b = make_table(tmp_path / "b", 50, 4, seed=2)
    config = kafka_config([a], broker.brokers, model="hps_one")
    config["models"].append(config_for([b], model="other")["models"][0])
    config["volatile_db"]["update_filters"] = ["^hps_.+$"]  # HugeCTR's default: here it matches hps_one
    rows = np.full((2, 4), 3.0, np.float32)
    with hps.HPS(config) as ps:
        other = hps.UpdatePublisher(broker.brokers, "other", partitions=1)
        other.publish("sparse_embedding0", b.keys[:2], rows)
        other.flush()
        one = hps.UpdatePublisher(broker.brokers, "hps_one", partitions=1)
        one.publish("sparse_embedding0", a.keys[:2], rows)
        one.flush()
        wait_until(lambda: sees(ps, "hps_one", 0, a.keys[:2], rows), "the followed model is updated")
        ps.drain_update_sources()
        assert sees(ps, "other", 0, b.keys[:2], b.rows[:2])  # not followed: unchanged
        assert source_stats(ps)["errors"] == 0


def test_a_broker_that_goes_away_and_comes_back(tmp_path):
    """The broker becomes unreachable (connections dropped and refused, as when it dies) while
    updates go on being published, then comes back with its data: nothing lost, a key's updates
    applied in order (the last one wins)."""
    proxy = Proxy(0)
    broker = Broker(tmp_path / "tansu.log", advertised=proxy.address)
    proxy.target_port = broker.port
    broker.start()
    proxy.up()
    try:
        table = make_table(tmp_path / "t0", 100, 4)
        keys = table.keys[:10]
        with hps.HPS(kafka_config([table], proxy.address)) as ps:
            pub = hps.UpdatePublisher(proxy.address, "m", partitions=2)
            pub.publish("sparse_embedding0", keys, np.full((10, 4), 1.0))
            pub.flush()
            wait_until(lambda: sees(ps, "m", 0, keys, np.full((10, 4), 1.0)), "rows before the outage")
            errors = source_stats(ps)["errors"]
            proxy.down()
            wait_until(lambda: source_stats(ps)["errors"] > errors, "the lost broker is counted")
            for value in range(2, 7):  # queued by the producer while the broker is away
                pub.publish("sparse_embedding0", keys, np.full((10, 4), float(value)))
            assert sees(ps, "m", 0, keys, np.full((10, 4), 1.0))  # lookups go on meanwhile
            proxy.up()
            pub.flush()
            wait_until(lambda: sees(ps, "m", 0, keys, np.full((10, 4), 6.0)), "the last update after the outage")
            assert source_stats(ps)["rows"] == 60
            wait_until(lambda: source_stats(ps)["lag"] == 0, "the lag is 0 again")
    finally:
        proxy.down()
        broker.stop()


def test_broker_process_restart_is_survived(tmp_path, broker):
    """The broker process is killed and started again (empty: tansu keeps topics in memory); the
    consumer reconnects and takes updates of topics made after the restart."""
    a = make_table(tmp_path / "a", 100, 4)
    b = make_table(tmp_path / "b", 100, 4, seed=5)
    config = kafka_config([a, b], broker.brokers)
    with hps.HPS(config) as ps:
        with hps.UpdatePublisher(broker.brokers, "m", partitions=1) as pub:
            pub.publish("sparse_embedding0", a.keys[:3], np.ones((3, 4)))
        wait_until(lambda: sees(ps, "m", 0, a.keys[:3], np.ones((3, 4))), "rows before the restart")
        errors = source_stats(ps)["errors"]
        broker.restart()
        wait_until(lambda: source_stats(ps)["errors"] > errors, "the lost broker is counted")
        with hps.UpdatePublisher(broker.brokers, "m", partitions=1) as pub:
            pub.publish("sparse_embedding1", b.keys[:3], np.full((3, 4), 2.0))
        wait_until(lambda: sees(ps, "m", 1, b.keys[:3], np.full((3, 4), 2.0)), "rows after the restart")
        assert sees(ps, "m", 0, a.keys[:3], np.ones((3, 4)))


SERVER_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import hps
    config, progress = json.load(open(sys.argv[1])), sys.argv[2]
    with hps.HPS(config) as ps:
        while True:
            (s,) = ps.update_source_stats()
            with open(progress + ".tmp", "w") as f:
                json.dump(s, f)
            os.replace(progress + ".tmp", progress)
            time.sleep(0.01)
""")


@needs_rocksdb
def test_server_killed_mid_stream_loses_no_update(tmp_path, broker):
    table = make_table(tmp_path / "t0", 200, 4)
    config = kafka_config([table], broker.brokers, persistent=str(tmp_path / "db"))
    config_path = tmp_path / "ps.json"
    config_path.write_text(json.dumps(config))
    progress = tmp_path / "progress.json"
    rounds, per_round = 40, 50
    keys = np.arange(rounds * per_round, dtype=np.int64) + 10**9  # a distinct set of new keys per round
    rows = np.repeat(np.arange(rounds * per_round, dtype=np.float32)[:, None], 4, axis=1)
    pub = hps.UpdatePublisher(broker.brokers, "m", partitions=2, max_message_bytes=512)
    pub.publish("sparse_embedding0", keys[:1], rows[:1])  # makes the topic
    pub.flush()
    server = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(config_path), str(progress)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def applied() -> int:
            try:
                return json.loads(progress.read_text())["rows"]
            except (OSError, ValueError):
                return -1
        half = rounds // 2
        for r in range(half):
            pub.publish("sparse_embedding0", keys[r * per_round:(r + 1) * per_round],
                        rows[r * per_round:(r + 1) * per_round])
        pub.flush()
        wait_until(lambda: applied() > 0 or server.poll() is not None, "the server applies updates")
        assert server.poll() is None, server.stderr.read().decode()
        for r in range(half, rounds):  # published while the server dies
            pub.publish("sparse_embedding0", keys[r * per_round:(r + 1) * per_round],
                        rows[r * per_round:(r + 1) * per_round])
            if r == half + 2:
                os.kill(server.pid, signal.SIGKILL)
        pub.flush()
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
        server.wait()
    assert applied() > 0
    with hps.HPS(config) as ps:  # the same RocksDB and consumer group
        wait_until(lambda: sees(ps, "m", 0, keys, rows), "every update, before and after the kill, is served")
        assert source_stats(ps)["errors"] == 0


def test_hps_publish_command(tmp_path, broker, capsys):
    from hps.cli import main

    table = make_table(tmp_path / "t0", 100, 4)
    keys = np.array([table.keys[1], 12345], np.int64)
    rows = np.full((2, 4), 7.0, np.float32)
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    folder_keys = table.keys[10:20]
    hps.write_sparse_model(tmp_path / "delta", folder_keys, np.full((10, 4), 8.0, np.float32))
    with hps.HPS(kafka_config([table], broker.brokers, embedding_table_names=["emb"])) as ps:
        assert main(["publish", "--brokers", broker.brokers, "--model", "m", "--table", "emb",
                     "--keys", str(tmp_path / "k.npy"), "--rows", str(tmp_path / "r.npy"), "--partitions", "2"]) == 0
        assert capsys.readouterr().out.startswith(f"published 2 rows x 4 to hps_et.m.emb on {broker.brokers}: ")
        assert main(["publish", "--brokers", broker.brokers, "--model", "m", "--table", "emb",
                     "--from-table", str(tmp_path / "delta"), "--chunk-rows", "3"]) == 0
        wait_until(lambda: sees(ps, "m", "emb", keys, rows), "rows published from .npy")
        wait_until(lambda: sees(ps, "m", "emb", folder_keys, np.full((10, 4), 8.0)), "rows published from a folder")
    # Rows that do not match the keys: status 1, one line naming the problem.
    np.save(tmp_path / "bad.npy", np.zeros((3, 4), np.float32))
    assert main(["publish", "--brokers", broker.brokers, "--model", "m", "--table", "emb",
                 "--keys", str(tmp_path / "k.npy"), "--rows", str(tmp_path / "bad.npy")]) == 1
    assert "expected rows of shape [2, D], got [3, 4]" in capsys.readouterr().err


def test_librdkafka_that_does_not_load_is_named(tmp_path):
    """HPS_LIBRDKAFKA points at the library to load; one that does not load is an error naming it
    (no broker needed: the library is loaded before anything connects)."""
    table = make_table(tmp_path / "t0", 10, 4)
    config_path = tmp_path / "ps.json"
    config_path.write_text(json.dumps(kafka_config([table], "127.0.0.1:1")))
    script = textwrap.dedent("""
        import sys, hps
        try:
            hps.HPS(sys.argv[1])
        except hps.BackendUnavailableError as e:
            print(e)
    """)
    env = dict(os.environ, HPS_LIBRDKAFKA=str(tmp_path / "nowhere.so"))
    out = subprocess.run([sys.executable, "-c", script, str(config_path)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "cannot load librdkafka" in out.stdout and "nowhere.so (HPS_LIBRDKAFKA)" in out.stdout, out


@needs_rocksdb
def test_the_lag_after_a_restart_counts_from_the_committed_offsets(tmp_path, broker):
    # A server with a persistent_db resumes at its group's committed offsets. With nothing new
    # published, nothing is unapplied: the lag used to count every message the broker held.
    table = make_table(tmp_path / "t", 500, 4)
    config = kafka_config([table], broker.brokers, persistent=str(tmp_path / "db"), embedding_table_names=["emb"])
    keys = table.keys[:50]
    with hps.UpdatePublisher(broker.brokers, "m", partitions=2) as publisher:
        with hps.HPS(config) as ps:
            for i in range(20):
                publisher.publish("emb", keys, np.full((50, 4), float(i)))
            publisher.flush()
            wait_until(lambda: sees(ps, "m", "emb", keys, np.full((50, 4), 19.0)), "the updates are applied")
            wait_until(lambda: source_stats(ps)["lag"] == 0, "the lag reaches 0")
        with hps.HPS(config) as ps:
            wait_until(lambda: source_stats(ps)["lag"] >= 0, "the lag is known")
            assert source_stats(ps)["lag"] == 0
            publisher.publish("emb", keys[:1], np.full((1, 4), 99.0))  # one more message is counted, then applied
            publisher.flush()
            wait_until(lambda: sees(ps, "m", "emb", keys[:1], np.full((1, 4), 99.0)), "the new update is applied")
            wait_until(lambda: source_stats(ps)["lag"] == 0, "the lag is 0 again")


needs_redis = pytest.mark.skipif(not (hps.redis_available() and redis_installed()),
                                 reason="this build has no Redis Cluster tier, or redis-server is not installed")


@contextlib.contextmanager
def first_server_on_shared_redis(broker, table, keys, updates: int):
    """A Redis Cluster holding `table` for servers without a persistent_db, and a first server that
    applied `updates` updates of `keys` (update i sets every value to i) and recorded how far it got.
    Yields (cluster, config, publisher, first)."""
    config = kafka_config([table], broker.brokers, embedding_table_names=["emb"])
    with LocalRedis(masters=3, replicas=0, node_timeout_ms=5000) as cluster, \
            hps.UpdatePublisher(broker.brokers, "m", partitions=2) as publisher:
        config["volatile_db"] = {"type": "redis_cluster", "address": cluster.address}
        with hps.HPS(config) as first:
            for i in range(updates):
                publisher.publish("emb", keys, np.full((keys.size, 4), float(i)))
            publisher.flush()
            newest = np.full((keys.size, 4), float(updates - 1))
            wait_until(lambda: sees(first, "m", "emb", keys, newest), "the first server applies the updates")
            first.drain_update_sources()  # the apply that served them has recorded its offsets too
            yield cluster, config, publisher, first


def other_server(config, group: str, **model_keys) -> dict:
    """The config of another server (as on another host: its own group; the same config would be the
    same server in this process)."""
    other = json.loads(json.dumps(config))
    other["update_source"]["group_id"] = group
    other["models"][0].update(model_keys)
    return other


@needs_redis
def test_a_server_joining_a_current_shared_redis_table_starts_where_its_writers_got_to(tmp_path, broker):
    # Servers without a persistent_db sharing one Redis Cluster table. The second finds the table
    # current (it does not reload it) and used to replay each topic from its beginning into it,
    # writing older rows over newer ones that the first server then served. Now it starts each
    # partition where the first had applied it (recorded beside the table's load marker).
    table = make_table(tmp_path / "t", 200, 4)
    keys = table.keys[:20]
    newest = np.full((20, 4), 29.0, np.float32)
    with first_server_on_shared_redis(broker, table, keys, 30) as (_, config, publisher, first):
        older_seen, done = [], threading.Event()

        def watch_first():  # what the first server serves while the second starts
            while not done.is_set():
                rows = first.lookup("m", "emb", keys)
                older_seen.extend(np.unique(rows[rows != 29.0]).tolist())

        watcher = threading.Thread(target=watch_first)
        watcher.start()
        try:
            with hps.HPS(other_server(config, "hps.test.second")) as second:
                wait_until(lambda: source_stats(second)["lag"] == 0, "the second server is caught up")
                assert source_stats(second)["received"] == 0, source_stats(second)  # nothing replayed
                assert sees(second, "m", "emb", keys, newest)
                done.set()
                watcher.join()
                assert older_seen == [], f"the first server served older rows: {sorted(set(older_seen))}"
                # Both serve what comes next (the one behind drops it from its caches, if any).
                publisher.publish("emb", keys[:5], np.full((5, 4), 30.0))
                publisher.flush()
                for ps in (first, second):
                    wait_until(lambda ps=ps: sees(ps, "m", "emb", keys[:5], np.full((5, 4), 30.0)),
                               "a later update is applied by both servers")
                wait_until(lambda: source_stats(second)["received"] >= 1, "the second server receives it too")
        finally:
            done.set()
            watcher.join()


@needs_redis
def test_a_shared_redis_table_reloaded_from_new_files_forgets_where_its_writers_got_to(tmp_path, broker):
    # The offsets recorded in a shared table describe the updates applied to that load. A server
    # with new table files reloads the table (here one without an update source); a server that
    # then joins must replay the topic over the new rows: had it started where the old load's
    # writers got to, the keys they updated before the reload would be missing. The server still
    # running on the old load goes on writing updates, but records nothing over the new load.
    old_files = make_table(tmp_path / "old", 200, 4, seed=1)
    new_files = make_table(tmp_path / "new", 200, 4, seed=2)
    keys = old_files.keys[:20]
    with first_server_on_shared_redis(broker, old_files, keys, 10) as (_, config, publisher, first):
        reloaded = other_server(config, "hps.test.reloader", sparse_files=[new_files.folder])
        del reloaded["update_source"]
        with hps.HPS(reloaded) as reloader:
            assert not sees(reloader, "m", "emb", keys, np.full((20, 4), 9.0))  # the new load has no updates
            publisher.publish("emb", keys[:5], np.full((5, 4), 10.0))
            publisher.flush()
            wait_until(lambda: sees(first, "m", "emb", keys[:5], np.full((5, 4), 10.0)),
                       "the first server applies a later update")
            first.drain_update_sources()  # and tried to record it
            with hps.HPS(other_server(config, "hps.test.joining", sparse_files=[new_files.folder])) as third:
                wait_until(lambda: source_stats(third)["lag"] == 0, "the joining server is caught up")
                assert source_stats(third)["received"] == 22, source_stats(third)  # the whole topic
                assert sees(third, "m", "emb", keys[5:], np.full((15, 4), 9.0))
                assert sees(third, "m", "emb", keys[:5], np.full((5, 4), 10.0))
                untouched = ~np.isin(new_files.keys, keys)  # the new files' rows no update touched
                np.testing.assert_array_equal(third.lookup("m", "emb", new_files.keys[untouched]),
                                              new_files.rows[untouched])


@needs_redis
def test_a_consumer_behind_another_leaves_the_newer_rows_of_a_shared_redis_table(tmp_path, broker):
    # A consumer behind another (here behind the record a server ahead of it would have made, made by
    # the test) does not write the messages the other applied already over the newer rows it wrote
    # since: it drops those keys from its own GPU caches and applies what comes after, as before.
    table = make_table(tmp_path / "t", 200, 4)
    keys = table.keys[:20]
    with first_server_on_shared_redis(broker, table, keys, 10) as (cluster, config, publisher, first):
        ahead = json.loads(json.dumps(config))
        del ahead["update_source"]
        with hps.HPS(ahead) as writer:  # the newer rows of the server ahead
            writer.update("m", "emb", keys, np.full((20, 4), 100.0))
        record = "hps{hps_et.m.emb}o"  # docs/redis.md: partition -> the next offset applied
        port = cluster.ports[0]
        applied = cluster.cli(port, "-c", "HGETALL", record).split()
        assert applied == ["0", "10", "1", "10"] or applied == ["1", "10", "0", "10"], applied
        for partition in ("0", "1"):  # the server ahead applied 5 more messages of each partition
            cluster.cli(port, "-c", "HSET", record, partition, "15")
        first.drain_update_sources()  # reads the record now (else within 50 ms of its next apply)
        rows = source_stats(first)["rows"]
        for i in range(10, 15):
            publisher.publish("emb", keys, np.full((20, 4), float(i)))
        publisher.flush()
        wait_until(lambda: source_stats(first)["received"] == 30, "the first server receives them")
        first.drain_update_sources()
        assert sees(first, "m", "emb", keys, np.full((20, 4), 100.0))  # not older rows over newer
        assert source_stats(first)["rows"] == rows, source_stats(first)
        # Beyond the record: applied as before.
        publisher.publish("emb", keys, np.full((20, 4), 15.0))
        publisher.flush()
        wait_until(lambda: sees(first, "m", "emb", keys, np.full((20, 4), 15.0)), "a later update is applied")
        assert source_stats(first)["rows"] == rows + 20


@pytest.mark.parametrize("volatile", ["hash_map", pytest.param("redis_cluster", marks=needs_redis)])
def test_updates_a_full_volatile_db_cannot_hold_are_dropped_and_counted_not_retried_forever(tmp_path, broker,
                                                                                             volatile):
    # Without a persistent_db the volatile_db refuses new keys it has no room for. A batch mixing
    # them with updates of held keys used to be retried forever, stalling every topic (a Redis
    # Cluster evicted held rows instead): now the held keys' updates land, the rest are counted as
    # dropped, and the consumer goes on.
    table = make_table(tmp_path / "t", 100, 4)
    config = kafka_config([table], broker.brokers, embedding_table_names=["emb"])
    with contextlib.ExitStack() as stack:
        if volatile == "redis_cluster":
            cluster = stack.enter_context(LocalRedis(masters=3, replicas=0, node_timeout_ms=5000))
            config["volatile_db"] = {"type": "redis_cluster", "address": cluster.address}
        config["volatile_db"].update(num_partitions=1, overflow_margin=100)
        publisher = stack.enter_context(hps.UpdatePublisher(broker.brokers, "m", partitions=1))
        ps = stack.enter_context(hps.HPS(config))
        held, new = table.keys[:10], np.arange(10**13, 10**13 + 5, dtype=np.int64)
        publisher.publish("emb", np.concatenate([held, new]), np.full((15, 4), 3.0))
        publisher.flush()
        wait_until(lambda: sees(ps, "m", "emb", held, np.full((10, 4), 3.0)), "the held keys' updates are applied")
        wait_until(lambda: source_stats(ps)["lag"] == 0, "the consumer moves on")
        stats = source_stats(ps)
        assert stats["errors"] >= 1 and "5 of 15 rows dropped" in stats["last_error"], stats
        assert "overflow_margin" in stats["last_error"]
        np.testing.assert_array_equal(ps.lookup("m", 0, new), np.zeros((5, 4), np.float32))  # the default row
        np.testing.assert_array_equal(ps.lookup("m", 0, table.keys[10:]), table.rows[10:])  # no row evicted
        publisher.publish("emb", held[:1], np.full((1, 4), 4.0))  # later messages still apply
        publisher.flush()
        wait_until(lambda: sees(ps, "m", "emb", held[:1], np.full((1, 4), 4.0)), "a later update is applied")

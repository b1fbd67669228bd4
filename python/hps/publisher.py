"""Publishing changed rows to Kafka for running servers to pick up (docs/kafka.md).

`UpdatePublisher(brokers, model)` is what a training job holds: `publish(table, keys, rows)`
sends the rows of one table, `flush()` waits until the brokers have them. Messages are HugeCTR's
(magic "HCTR", value size, key/value pairs, one topic `hps_et.<model>.<table>` per table), so
HugeCTR's consumers read them and hps servers read HugeCTR's producers. A key always goes to the
same partition (a hash of the key modulo the topic's partitions), and Kafka keeps a partition in
order, so the updates of one key are applied in the order they were published.

Built on confluent-kafka (librdkafka), imported when the first publisher is made. One publisher
may be used from one thread at a time.
"""

from __future__ import annotations

import re
import struct
import time
from typing import Any, Callable, Optional

import numpy as np

from .errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["UpdatePublisher", "topic_name", "pack_message", "partition_of", "MAGIC"]

MAGIC = b"HCTR"
HEADER = struct.Struct("<4sI")  # magic, value size in bytes
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,120}$")
_TOPIC_WAIT_S = 10.0


def topic_name(model: str, table: str) -> str:
    """The topic of one table: `hps_et.<model>.<table>` (its tag)."""
    return f"hps_et.{model}.{table}"


def _mix(keys: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (splitmix64's finalizer) over int64 keys, as uint64."""
    x = keys.astype(np.int64, copy=False).view(np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def partition_of(keys: Any, partitions: int, key_bits: int = 64) -> np.ndarray:
    """The partition each key goes to: a hash of the key modulo `partitions`."""
    k = _wire_keys(np.asarray(keys).reshape(-1), key_bits).astype(np.int64)
    return (_mix(k) % np.uint64(partitions)).astype(np.int64)


def _wire_keys(keys: np.ndarray, key_bits: int) -> np.ndarray:
    if keys.dtype.kind not in "iu":
        raise InvalidArgumentError(f"keys must be integers, got dtype {keys.dtype}")
    if key_bits == 64:
        if keys.dtype == np.uint64 and keys.size and int(keys.max()) >= 2**63:
            raise InvalidArgumentError(f"key {int(keys.max())} does not fit in a signed 64-bit integer")
        return keys.astype("<i8", copy=False)
    wide = keys.astype(np.int64) if keys.dtype != np.uint64 else keys
    if wide.size and (int(wide.min()) < -2**31 or int(wide.max()) >= 2**32):
        bad = int(wide.min()) if int(wide.min()) < -2**31 else int(wide.max())
        raise InvalidArgumentError(f"key {bad} does not fit 32 bits (key_bits=32 takes [-2^31, 2^32))")
    return (wide.astype(np.int64) & 0xFFFFFFFF).astype("<u4")


def pack_message(keys: Any, rows: Any, key_bits: int = 64) -> bytes:
    """One message in HugeCTR's layout: b"HCTR", u32 value size, then key/value pairs
    (keys little-endian int64, or uint32 with key_bits=32; values fp32)."""
    k = _wire_keys(np.asarray(keys).reshape(-1), key_bits)
    r = np.asarray(rows, dtype=np.float32).reshape(k.size, -1)
    dim = r.shape[1]
    pairs = np.empty(k.size, dtype=np.dtype([("k", k.dtype), ("v", "<f4", (dim,))]))
    pairs["k"] = k
    pairs["v"] = r
    return HEADER.pack(MAGIC, 4 * dim) + pairs.tobytes()


class UpdatePublisher:
    """Publishes updated rows of one model's tables to Kafka.

    brokers: "host:port[,host:port...]". model: the model name servers know.
    key_bits: 64 (int64 keys) or 32 (uint32 keys, for servers with "supportlonglong": false);
        the messages do not say which, so it must match the servers' configuration.
    partitions: partitions of each topic this publisher creates (topics that exist keep theirs).
    max_message_bytes: largest message (keep it at most the servers' receive_buffer_size).
    create_topics: create a table's topic on its first publish when it does not exist.
    config: more librdkafka producer settings (they override the defaults here).
    """

    def __init__(self, brokers: str, model: str, *, key_bits: int = 64, partitions: int = 8,
                 max_message_bytes: int = 262144, create_topics: bool = True,
                 config: Optional[dict] = None) -> None:
        try:
            import confluent_kafka
            from confluent_kafka.admin import AdminClient
        except ImportError:
            raise BackendUnavailableError("hps.UpdatePublisher needs confluent-kafka: pip install confluent-kafka")
        if not _NAME.match(model):
            raise InvalidArgumentError(f"model name {model!r} must match [A-Za-z0-9_-]{{1,120}}")
        if key_bits not in (32, 64):
            raise InvalidArgumentError(f"key_bits must be 32 or 64, got {key_bits}")
        if partitions < 1:
            raise InvalidArgumentError(f"partitions must be 1 or more, got {partitions}")
        if max_message_bytes < HEADER.size + 8 + 4:
            raise InvalidArgumentError(f"max_message_bytes {max_message_bytes} cannot hold one pair")
        self.brokers = brokers
        self.model = model
        self.key_bits = key_bits
        self.partitions = partitions
        self.max_message_bytes = max_message_bytes
        self.create_topics = create_topics
        settings = {
            "bootstrap.servers": brokers,
            "linger.ms": 5,  # freshness: batches leave within 5 ms
            "acks": "all",
            "enable.idempotence": True,  # retries neither duplicate nor reorder a partition
            "message.max.bytes": max(1000000, max_message_bytes + 1024),
        }
        settings.update(config or {})
        self._kafka = confluent_kafka
        self._producer = confluent_kafka.Producer(settings)
        self._admin = AdminClient({k: v for k, v in settings.items() if k == "bootstrap.servers"
                                   or k.startswith(("security.", "sasl.", "ssl."))})
        self._topics: dict[str, int] = {}  # topic -> partitions
        self._dims: dict[str, int] = {}
        self._errors: list[str] = []
        self.messages = 0  # messages handed to the producer
        self.rows = 0      # rows handed to the producer

    # ---- topics ----------------------------------------------------------------------------------

    def _partitions(self, topic: str) -> int:
        known = self._topics.get(topic)
        if known:
            return known
        deadline = time.monotonic() + _TOPIC_WAIT_S
        created = False
        while True:
            try:
                meta = self._producer.list_topics(timeout=max(0.1, deadline - time.monotonic()))
            except self._kafka.KafkaException as error:
                raise BackendUnavailableError(f"cannot read topics from {self.brokers}: {error}") from None
            found = meta.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                self._topics[topic] = len(found.partitions)
                return self._topics[topic]
            if not self.create_topics:
                raise BackendUnavailableError(f"topic {topic} does not exist on {self.brokers} "
                                              f"(create_topics=False)")
            if not created:
                self._create(topic)
                created = True
            if time.monotonic() > deadline:
                raise BackendUnavailableError(f"topic {topic} did not appear on {self.brokers} within "
                                              f"{_TOPIC_WAIT_S:.0f} s")
            time.sleep(0.05)

    def _create(self, topic: str) -> None:
        from confluent_kafka.admin import NewTopic
        futures = self._admin.create_topics([NewTopic(topic, num_partitions=self.partitions, replication_factor=1)],
                                            operation_timeout=_TOPIC_WAIT_S)
        try:
            futures[topic].result(timeout=_TOPIC_WAIT_S)
        except self._kafka.KafkaException as error:
            if error.args and error.args[0].code() == self._kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                return  # another publisher was first
            raise BackendUnavailableError(f"cannot create topic {topic} on {self.brokers}: {error}") from None

    # ---- publishing ------------------------------------------------------------------------------

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}[{message.partition()}]: {error}")

    def publish(self, table: str, keys: Any, rows: Any) -> None:
        """Sends rows[i] as the new row of keys[i] in `table` (rows: [n, dim] floats; any leading
        shape of keys). Returns once the messages are queued; flush() waits for the brokers."""
        if not isinstance(table, str) or not _NAME.match(table):
            raise InvalidArgumentError(f"table name {table!r} must match [A-Za-z0-9_-]{{1,120}}")
        k = _wire_keys(np.asarray(keys).reshape(-1), self.key_bits)
        r = np.asarray(rows, dtype=np.float32)
        if r.ndim == 0 or r.shape[-1] == 0 or r.size != k.size * r.shape[-1]:
            raise InvalidArgumentError(f"rows of shape {list(r.shape)} do not match {k.size} keys "
                                       "(expected [..., dim] with one row per key)")
        dim = r.shape[-1]
        r = np.ascontiguousarray(r.reshape(k.size, dim))
        known = self._dims.setdefault(table, dim)
        if known != dim:
            raise InvalidArgumentError(f"table {table}: rows of dimension {dim}, but earlier ones had {known}")
        if k.size == 0:
            return
        topic = topic_name(self.model, table)
        partitions = self._partitions(topic)
        part = (_mix(k.astype(np.int64)) % np.uint64(partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")  # stable: a key's updates keep their order
        bounds = np.searchsorted(part[order], np.arange(partitions + 1))
        per_message = max(1, (self.max_message_bytes - HEADER.size) // (k.itemsize + 4 * dim))
        for p in range(partitions):
            index = order[bounds[p]:bounds[p + 1]]
            for first in range(0, index.size, per_message):
                chunk = index[first:first + per_message]
                self._produce(topic, p, pack_message(k[chunk], r[chunk], self.key_bits))
        self.rows += k.size
        self._producer.poll(0)

    def _produce(self, topic: str, partition: int, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, partition=partition, on_delivery=self._delivered)
                self.messages += 1
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def flush(self, timeout: float = 30.0) -> None:
        """Waits until the brokers acknowledged every message. Raises BackendUnavailableError when
        some could not be delivered (or not within `timeout` seconds)."""
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if errors:
            raise BackendUnavailableError(f"{len(errors)} update messages were not delivered to {self.brokers}; "
                                          f"first: {errors[0]}")
        if left:
            raise BackendUnavailableError(f"{left} update messages still undelivered to {self.brokers} after "
                                          f"{timeout} s")

    def close(self) -> None:
        """Flushes, then releases the producer."""
        try:
            self.flush()
        finally:
            self._producer = None  # type: ignore[assignment]

    def __enter__(self) -> "UpdatePublisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._producer is not None:
            if exc[0] is None:
                self.close()
            else:
                self._producer.flush(5)
                self._producer = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"hps.UpdatePublisher({self.brokers!r}, {self.model!r}, key_bits={self.key_bits})"

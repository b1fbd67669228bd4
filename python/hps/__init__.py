"""hps: a hierarchical parameter server for recommender-model inference.

Embedding tables far larger than GPU memory, served through a GPU cache in front of a CPU-memory
tier in front of RocksDB. Configuration keys and table files are HugeCTR HPS's.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import _core
from .config import Config, json_schema
from .errors import (
    BackendUnavailableError,
    ConfigError,
    ConfigWarning,
    HpsError,
    InvalidArgumentError,
    KeyTypeError,
    NotFoundError,
    OutOfMemoryError,
    StorageError,
)
from .memory_plan import machine_memory, memory_plan
from .model_files import inspect_sparse_model, read_sparse_model, write_model_config, write_sparse_model
from .publisher import UpdatePublisher
from .server import HPS

_core.register_errors(HpsError, ConfigError, InvalidArgumentError, NotFoundError, StorageError,
                      BackendUnavailableError, OutOfMemoryError)

try:
    __version__ = _metadata.version("hps")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"


def cuda_device_count() -> int:
    """CUDA devices this build of hps can use (0 without CUDA or without a GPU)."""
    return _core.device_count()


def rocksdb_available() -> bool:
    """Whether this build has the RocksDB persistent tier."""
    return _core.has_rocksdb()


def redis_available() -> bool:
    """Whether this build has the Redis Cluster tier (volatile_db.type redis_cluster)."""
    return _core.has_redis()


def build_features() -> dict:
    """What this build of hps has built in: {"gpu_cache", "rocksdb", "redis", "kafka", "tf_op", "tensorrt_plugin"}: bool."""
    import json

    return json.loads(_core.features_json())


__all__ = [
    "HPS",
    "UpdatePublisher",
    "Config",
    "json_schema",
    "write_model_config",
    "write_sparse_model",
    "read_sparse_model",
    "inspect_sparse_model",
    "memory_plan",
    "machine_memory",
    "cuda_device_count",
    "rocksdb_available",
    "redis_available",
    "build_features",
    "HpsError",
    "ConfigError",
    "InvalidArgumentError",
    "KeyTypeError",
    "NotFoundError",
    "StorageError",
    "BackendUnavailableError",
    "OutOfMemoryError",
    "ConfigWarning",
    "__version__",
]

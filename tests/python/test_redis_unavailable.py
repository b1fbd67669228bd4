"""A build without hiredis refuses a redis_cluster config with a clear error (runs only there)."""

from __future__ import annotations

import pytest

import hps
from conftest import config_for, make_table


@pytest.mark.skipif(hps.redis_available(), reason="this build has the Redis Cluster tier")
def test_redis_cluster_without_hiredis_says_what_to_install(tmp_path):
    t = make_table(tmp_path / "t", 10, 4)
    config = config_for([t])
    config["volatile_db"] = {"type": "redis_cluster", "address": "127.0.0.1:1"}
    with pytest.raises(hps.BackendUnavailableError, match="libhiredis-dev"):
        hps.HPS(config)

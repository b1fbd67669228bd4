// Which partition of a Redis Cluster table a key belongs to; built with or without hiredis, since
// the load check (check_table_fits) counts a table's keys per partition before any row is stored.
#include "detail/hashing.hpp"
#include "hps/tiers/redis_cluster_tier.hpp"

namespace hps {

std::size_t RedisClusterTier::partition_of(std::int64_t key, std::size_t partitions) {
  return static_cast<std::size_t>(splitmix64(key) % partitions);
}

}  // namespace hps

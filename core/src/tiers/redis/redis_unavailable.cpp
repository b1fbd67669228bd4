// The Redis Cluster tier in builds without hiredis: asking for it says why it is missing.
#include "hps/error.hpp"
#include "hps/tiers/redis_cluster_tier.hpp"

namespace hps {

bool redis_available() { return false; }

std::shared_ptr<RedisClusterTier> make_redis_cluster_tier(const VolatileDbConfig& config, const std::string& table_tag,
                                                          std::size_t /*dim*/, bool /*evict_on_overflow*/) {
  HPS_FAIL(BackendUnavailable, "volatile_db.type redis_cluster (", config.address, ", table ", table_tag,
           "): this build of hps has no Redis Cluster tier; install libhiredis-dev and reinstall hps "
           "(or build with HPS_WITH_REDIS=ON)");
}

}  // namespace hps

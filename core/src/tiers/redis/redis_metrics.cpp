// The Redis Cluster tier's counters as the server's per-tier metrics (Tier::event_counters());
// built with or without hiredis.
#include "hps/tiers/redis_cluster_tier.hpp"

namespace hps {

std::vector<TierCounter> RedisClusterTier::event_counters() const {
  const RedisClusterCounters c = counters();
  return {
      {"fallthrough_keys", c.fallthrough_keys,
       "Lookup keys reported missing because their tier's node failed or timed out (Redis Cluster)."},
      {"failed_writes", c.failed_writes, "Write calls that failed because the tier's backend could not take them."},
      {"evicted_rows", c.evicted_rows, "Rows evicted by the tier's overflow resolution."},
      {"bad_rows", c.bad_rows, "Stored values of the wrong size, reported missing."},
      {"absent_keys", c.absent_keys, "Lookup keys a Redis node answered as not stored (misses that are not fall-throughs)."},
      {"timeouts", c.timeouts, "Backend operations that ran past operation_timeout_ms (per Redis cluster client)."},
      {"node_errors", c.node_errors, "Backend connection failures and error replies (per Redis cluster client)."},
      {"moved_redirects", c.moved_redirects, "Redis MOVED redirects (per Redis cluster client)."},
      {"ask_redirects", c.ask_redirects, "Redis ASK redirects (per Redis cluster client)."},
      {"reconnects", c.reconnects, "Connections reopened after one was lost (per Redis cluster client)."},
      {"slot_map_refreshes", c.slot_map_refreshes, "Redis CLUSTER SLOTS reads (per Redis cluster client)."},
  };
}

}  // namespace hps

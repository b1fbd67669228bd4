// Prometheus lines of the Redis Cluster tier's counters; built with or without hiredis, so the
// server's metrics code can call it unconditionally.
#include <sstream>

#include "hps/tiers/redis_cluster_tier.hpp"

namespace hps {

std::string redis_cluster_prometheus(const std::string& model, const std::string& table,
                                     const RedisClusterCounters& c) {
  const std::string labels = "{model=\"" + model + "\",table=\"" + table + "\"}";
  std::ostringstream out;
  auto counter = [&](const char* name, const char* help, std::uint64_t value) {
    out << "# HELP hps_redis_" << name << "_total " << help << "\n# TYPE hps_redis_" << name << "_total counter\n"
        << "hps_redis_" << name << "_total" << labels << ' ' << value << '\n';
  };
  counter("fallthrough_keys", "Lookup keys reported missing because their Redis node failed or timed out.",
          c.fallthrough_keys);
  counter("failed_writes", "Write calls that failed because Redis could not take them.", c.failed_writes);
  counter("evicted_rows", "Rows evicted from Redis partitions by overflow resolution.", c.evicted_rows);
  counter("bad_rows", "Stored Redis values of the wrong size, reported missing.", c.bad_rows);
  counter("timeouts", "Redis operations that ran past operation_timeout_ms.", c.timeouts);
  counter("node_errors", "Redis connection failures and error replies.", c.node_errors);
  counter("moved_redirects", "Redis MOVED redirects.", c.moved_redirects);
  counter("ask_redirects", "Redis ASK redirects.", c.ask_redirects);
  counter("reconnects", "Redis connections reopened after one was lost.", c.reconnects);
  counter("slot_map_refreshes", "Redis CLUSTER SLOTS reads.", c.slot_map_refreshes);
  return out.str();
}

}  // namespace hps

// Prometheus lines of the Redis Cluster tier's counters; built with or without hiredis, so the
// server's metrics code can call it unconditionally.
#include <sstream>

#include "hps/tiers/redis_cluster_tier.hpp"

namespace hps {

std::string redis_cluster_prometheus(const std::vector<RedisTableCounters>& tables) {
  if (tables.empty()) return "";
  std::ostringstream out;
  auto counter = [&](const char* name, const char* help, std::uint64_t RedisClusterCounters::*field) {
    out << "# HELP hps_redis_" << name << "_total " << help << "\n# TYPE hps_redis_" << name << "_total counter\n";
    for (const auto& t : tables) {
      out << "hps_redis_" << name << "_total{model=\"" << t.model << "\",table=\"" << t.table << "\"} "
          << t.counters.*field << '\n';
    }
  };
  using C = RedisClusterCounters;
  counter("fallthrough_keys", "Lookup keys reported missing because their Redis node failed or timed out.",
          &C::fallthrough_keys);
  counter("failed_writes", "Write calls that failed because Redis could not take them.", &C::failed_writes);
  counter("evicted_rows", "Rows evicted from Redis partitions by overflow resolution.", &C::evicted_rows);
  counter("bad_rows", "Stored Redis values of the wrong size, reported missing.", &C::bad_rows);
  counter("timeouts", "Redis operations that ran past operation_timeout_ms (per cluster client).", &C::timeouts);
  counter("node_errors", "Redis connection failures and error replies (per cluster client).", &C::node_errors);
  counter("moved_redirects", "Redis MOVED redirects (per cluster client).", &C::moved_redirects);
  counter("ask_redirects", "Redis ASK redirects (per cluster client).", &C::ask_redirects);
  counter("reconnects", "Redis connections reopened after one was lost (per cluster client).", &C::reconnects);
  counter("slot_map_refreshes", "Redis CLUSTER SLOTS reads (per cluster client).", &C::slot_map_refreshes);
  return out.str();
}

}  // namespace hps

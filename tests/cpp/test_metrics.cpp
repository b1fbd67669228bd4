#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "hps/metrics.hpp"

TEST(LatencyHistogram, QuantilesBracketTheTruth) {
  hps::LatencyHistogram h;
  std::mt19937 rng(7);
  std::lognormal_distribution<double> dist(-9.0, 1.0);  // around 120 µs
  std::vector<double> samples(20000);
  for (auto& s : samples) {
    s = dist(rng);
    h.record(s);
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.5, 0.9, 0.99}) {
    const double truth = samples[static_cast<std::size_t>(q * samples.size()) - 1];
    const double got = h.quantile(q);
    EXPECT_GE(got, truth * 0.999) << q;       // an upper bound of the bucket holding it
    EXPECT_LE(got, truth * 1.13) << q;        // buckets are 1/8 of an octave wide
  }
  EXPECT_EQ(h.count(), samples.size());
  EXPECT_DOUBLE_EQ(h.max(), static_cast<double>(static_cast<std::uint64_t>(samples.back() * 1e9)) * 1e-9);
}

TEST(LatencyHistogram, EmptyIsZero) {
  hps::LatencyHistogram h;
  EXPECT_EQ(h.quantile(0.5), 0.0);
  EXPECT_EQ(h.count(), 0u);
}

TEST(Prometheus, ExposesCountersAndHistogram) {
  hps::TableMetrics m({"gpu_cache", "volatile_db", "persistent_db"});
  m.lookups = 3;
  m.keys = 30;
  m.hits(1) = 20;
  m.defaults = 10;
  m.latency.record(2e-5);
  m.latency.record(3e-4);
  m.latency.record(3e-4);
  std::vector<hps::TableStats> stats(1);
  stats[0].model = "dlrm";
  stats[0].table = "t0";
  m.snapshot(stats[0]);
  const std::string text = hps::to_prometheus(stats);
  EXPECT_NE(text.find("hps_lookup_keys_total{model=\"dlrm\",table=\"t0\"} 30"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_tier_hits_total{model=\"dlrm\",table=\"t0\",tier=\"volatile_db\"} 20"), std::string::npos);
  EXPECT_NE(text.find("hps_defaults_total{model=\"dlrm\",table=\"t0\"} 10"), std::string::npos);
  EXPECT_NE(text.find("le=\"2.5e-05\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("le=\"0.0005\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_lookup_latency_seconds_count{model=\"dlrm\",table=\"t0\"} 3"), std::string::npos);
}

// A tier's event counters are Prometheus counters (_total); its levels (bytes held) are gauges.
TEST(Prometheus, TierCountersAndGaugesAreTyped) {
  std::vector<hps::TableStats> stats(1);
  stats[0].model = "dlrm";
  stats[0].table = "t0";
  hps::TierStats tier;
  tier.name = "gpu_cache";
  tier.counters.push_back({"rows_served", 7, "Rows served.", false});
  tier.counters.push_back({"index_bytes", 4096, "Bytes of the index.", true});
  stats[0].tiers.push_back(tier);
  const std::string text = hps::to_prometheus(stats);
  EXPECT_NE(text.find("# TYPE hps_tier_rows_served_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_tier_rows_served_total{model=\"dlrm\",table=\"t0\",tier=\"gpu_cache\"} 7"), std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE hps_tier_index_bytes gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_tier_index_bytes{model=\"dlrm\",table=\"t0\",tier=\"gpu_cache\"} 4096"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("hps_tier_index_bytes_total"), std::string::npos) << text;
}

// Tiers are entries by name: any list of names comes out in JSON and Prometheus, in order, with no
// code that knows them.
TEST(Metrics, TiersAreEntriesByName) {
  hps::TableMetrics m({"gpu_cache", "volatile_db", "persistent_db", "fourth_db"});
  m.lookups = 2;
  m.keys = 7;
  m.hits(0) = 1;
  m.hits(3) = 4;
  m.defaults = 2;
  m.latency.record(1e-4);
  m.device_call_latency.record(3e-6);
  std::vector<hps::TableStats> stats(1);
  stats[0].model = "m";
  stats[0].table = "t";
  m.snapshot(stats[0]);
  ASSERT_EQ(stats[0].tiers.size(), 4u);
  stats[0].tiers[3].rows = 11;
  stats[0].tiers[3].bytes = 99;
  // A tier's own counters (Tier::event_counters()) need no metrics code of their own.
  stats[0].tiers[3].counters = {{"wrong_turns", 5, "Turns a fourth tier took wrong."}, {"naps", 0, "Naps."}};
  EXPECT_EQ(stats[0].tiers[3].name, "fourth_db");
  EXPECT_EQ(stats[0].tiers[3].hits, 4u);

  const std::string json = hps::to_json(stats);
  EXPECT_NE(json.find("\"hits\":{\"gpu_cache\":1,\"volatile_db\":0,\"persistent_db\":0,\"fourth_db\":4}"),
            std::string::npos) << json;
  EXPECT_NE(json.find("\"tier_rows\":{\"gpu_cache\":0,\"volatile_db\":0,\"persistent_db\":0,\"fourth_db\":11}"),
            std::string::npos) << json;
  EXPECT_NE(json.find("\"tier_bytes\":{\"gpu_cache\":0,\"volatile_db\":0,\"persistent_db\":0,\"fourth_db\":99}"),
            std::string::npos) << json;
  // The per-table keys of stats() stay in their order; device calls get their own entry.
  const char* order[] = {"\"model\"", "\"table\"", "\"lookups\"", "\"keys\"", "\"hits\"", "\"defaults\"",
                         "\"updated_keys\"", "\"erased_keys\"", "\"promoted_keys\"", "\"latency_seconds\"",
                         "\"tier_rows\"", "\"tier_bytes\"", "\"device_call_latency_seconds\"", "\"tier_counters\""};
  std::size_t at = 0;
  for (const char* key : order) {
    const std::size_t found = json.find(key, at);
    ASSERT_NE(found, std::string::npos) << key << " in " << json;
    at = found;
  }
  EXPECT_NE(json.find("\"tier_counters\":{\"gpu_cache\":{},\"volatile_db\":{},\"persistent_db\":{},"
                      "\"fourth_db\":{\"wrong_turns\":5,\"naps\":0}}"),
            std::string::npos) << json;
  EXPECT_NE(json.find("\"device_call_latency_seconds\":{\"p50\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"count\":1}"), std::string::npos) << json;

  const std::string text = hps::to_prometheus(stats);
  EXPECT_NE(text.find("hps_tier_hits_total{model=\"m\",table=\"t\",tier=\"fourth_db\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_tier_rows{model=\"m\",table=\"t\",tier=\"fourth_db\"} 11\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_tier_memory_bytes{model=\"m\",table=\"t\",tier=\"fourth_db\"} 99\n"), std::string::npos);
  EXPECT_NE(text.find("# HELP hps_tier_wrong_turns_total Turns a fourth tier took wrong.\n"
                      "# TYPE hps_tier_wrong_turns_total counter\n"
                      "hps_tier_wrong_turns_total{model=\"m\",table=\"t\",tier=\"fourth_db\"} 5\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("hps_tier_naps_total{model=\"m\",table=\"t\",tier=\"fourth_db\"} 0\n"), std::string::npos);
  // Each histogram counts its own calls: one host lookup, one device call.
  EXPECT_NE(text.find("hps_lookup_latency_seconds_count{model=\"m\",table=\"t\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hps_device_call_latency_seconds_count{model=\"m\",table=\"t\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("hps_device_call_latency_seconds_bucket{model=\"m\",table=\"t\",le=\"1e-05\"} 1\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("hps_lookup_latency_seconds_bucket{model=\"m\",table=\"t\",le=\"5e-05\"} 0\n"),
            std::string::npos) << text;
}

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
  hps::TableMetrics m;
  m.lookups = 3;
  m.keys = 30;
  m.hits[1] = 20;
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

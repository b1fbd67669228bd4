#include "hps/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

namespace hps {

namespace {
constexpr double kMinSeconds = 1e-6;  // bucket 0 holds everything up to 1 µs
}

// Bucket b >= 1 covers (2^o * (1 + s/8), 2^o * (1 + (s+1)/8)] µs with o = (b-1)/8, s = (b-1)%8.
int LatencyHistogram::bucket_of(double seconds) {
  const double us = seconds / kMinSeconds;
  if (!(us > 1.0)) return 0;
  int exponent = 0;
  const double mantissa = std::frexp(us, &exponent);  // us = mantissa * 2^exponent, mantissa in [0.5, 1)
  const int octave = exponent - 1;
  if (octave >= kOctaves) return kBuckets - 1;
  const int sub = std::min(kSubBuckets - 1, static_cast<int>((mantissa * 2.0 - 1.0) * kSubBuckets));
  return 1 + octave * kSubBuckets + sub;
}

double LatencyHistogram::upper_bound(int bucket) {
  if (bucket <= 0) return kMinSeconds;
  const int octave = (bucket - 1) / kSubBuckets;
  const int sub = (bucket - 1) % kSubBuckets;
  return kMinSeconds * std::ldexp(1.0 + static_cast<double>(sub + 1) / kSubBuckets, octave);
}

void LatencyHistogram::record(double seconds) {
  counts_[static_cast<std::size_t>(bucket_of(seconds))].fetch_add(1, std::memory_order_relaxed);
  const auto ns = static_cast<std::uint64_t>(std::max(0.0, seconds) * 1e9);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  std::uint64_t seen = max_ns_.load(std::memory_order_relaxed);
  while (ns > seen && !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

std::uint64_t LatencyHistogram::count() const {
  std::uint64_t total = 0;
  for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
  return total;
}

double LatencyHistogram::sum() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-9; }
double LatencyHistogram::max() const { return static_cast<double>(max_ns_.load(std::memory_order_relaxed)) * 1e-9; }

double LatencyHistogram::quantile(double q) const {
  const std::uint64_t total = count();
  if (total == 0) return 0.0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[static_cast<std::size_t>(b)].load(std::memory_order_relaxed);
    if (seen >= std::max<std::uint64_t>(rank, 1)) return std::min(upper_bound(b), max());
  }
  return max();
}

std::vector<std::pair<double, std::uint64_t>> LatencyHistogram::cumulative(const std::vector<double>& bounds) const {
  std::vector<std::pair<double, std::uint64_t>> out;
  out.reserve(bounds.size());
  std::uint64_t seen = 0;
  int b = 0;
  for (double bound : bounds) {
    // Buckets whose upper bound lies at or below `bound` count fully (a coarse but monotone view).
    while (b < kBuckets && upper_bound(b) <= bound * (1 + 1e-12)) {
      seen += counts_[static_cast<std::size_t>(b)].load(std::memory_order_relaxed);
      ++b;
    }
    out.emplace_back(bound, seen);
  }
  return out;
}

TableMetrics::TableMetrics(std::vector<std::string> tier_names)
    : tier_names_(std::move(tier_names)), hits_(new std::atomic<std::uint64_t>[tier_names_.size()]) {
  for (std::size_t t = 0; t < tier_names_.size(); ++t) hits_[t].store(0, std::memory_order_relaxed);
}

namespace {

void summarize(const LatencyHistogram& h, LatencyStats& out) {
  static const std::vector<double> kBounds = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                                              2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0};
  out.count = h.count();
  out.p50 = h.quantile(0.50);
  out.p90 = h.quantile(0.90);
  out.p99 = h.quantile(0.99);
  out.max = h.max();
  out.sum = h.sum();
  out.buckets = h.cumulative(kBounds);
}

}  // namespace

void TableMetrics::snapshot(TableStats& out) const {
  out.lookups = lookups.load(std::memory_order_relaxed);
  out.keys = keys.load(std::memory_order_relaxed);
  out.tiers.resize(tier_names_.size());
  for (std::size_t t = 0; t < tier_names_.size(); ++t) {
    out.tiers[t].name = tier_names_[t];
    out.tiers[t].hits = hits_[t].load(std::memory_order_relaxed);
  }
  out.defaults = defaults.load(std::memory_order_relaxed);
  out.updated_keys = updated_keys.load(std::memory_order_relaxed);
  out.erased_keys = erased_keys.load(std::memory_order_relaxed);
  out.promoted_keys = promoted_keys.load(std::memory_order_relaxed);
  summarize(latency, out.latency);
  summarize(device_call_latency, out.device_call_latency);
}

namespace {

std::string labels(const TableStats& s) {
  // Model and table names are [A-Za-z0-9_-], so they need no escaping.
  return "model=\"" + s.model + "\",table=\"" + s.table + "\"";
}

std::string tier_label(const TierStats& t) {
  // Tier names are config role names ([a-z_]), so they need no escaping either.
  return ",tier=\"" + t.name + "\"} ";
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

std::string to_prometheus(const std::vector<TableStats>& stats) {
  std::ostringstream out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  family("hps_lookups_total", "counter", "Lookup calls.");
  for (const auto& s : stats) out << "hps_lookups_total{" << labels(s) << "} " << s.lookups << '\n';
  family("hps_lookup_keys_total", "counter", "Keys looked up, duplicates included.");
  for (const auto& s : stats) out << "hps_lookup_keys_total{" << labels(s) << "} " << s.keys << '\n';
  family("hps_tier_hits_total", "counter", "Keys answered by each tier.");
  for (const auto& s : stats) {
    for (const TierStats& t : s.tiers) out << "hps_tier_hits_total{" << labels(s) << tier_label(t) << t.hits << '\n';
  }
  family("hps_defaults_total", "counter", "Keys stored in no tier, answered with the table's default row.");
  for (const auto& s : stats) out << "hps_defaults_total{" << labels(s) << "} " << s.defaults << '\n';
  family("hps_updated_keys_total", "counter", "Keys written by update().");
  for (const auto& s : stats) out << "hps_updated_keys_total{" << labels(s) << "} " << s.updated_keys << '\n';
  family("hps_erased_keys_total", "counter", "Keys removed by erase().");
  for (const auto& s : stats) out << "hps_erased_keys_total{" << labels(s) << "} " << s.erased_keys << '\n';
  family("hps_promoted_keys_total", "counter", "Rows copied into a faster tier after a miss.");
  for (const auto& s : stats) out << "hps_promoted_keys_total{" << labels(s) << "} " << s.promoted_keys << '\n';
  family("hps_tier_rows", "gauge", "Rows each tier holds for the table.");
  for (const auto& s : stats) {
    for (const TierStats& t : s.tiers) out << "hps_tier_rows{" << labels(s) << tier_label(t) << t.rows << '\n';
  }
  family("hps_tier_memory_bytes", "gauge", "Memory each tier holds for the table (device bytes for the GPU cache).");
  for (const auto& s : stats) {
    for (const TierStats& t : s.tiers) {
      out << "hps_tier_memory_bytes{" << labels(s) << tier_label(t) << t.bytes << '\n';
    }
  }
  // Each tier's own counters: one family per counter name, in order of first appearance, with a
  // sample for every (table, tier) that has it.
  std::vector<const TierCounter*> families;
  for (const auto& s : stats) {
    for (const TierStats& t : s.tiers) {
      for (const TierCounter& c : t.counters) {
        const bool known = std::any_of(families.begin(), families.end(),
                                       [&](const TierCounter* f) { return f->name == c.name; });
        if (!known) families.push_back(&c);
      }
    }
  }
  for (const TierCounter* f : families) {
    const std::string name = "hps_tier_" + f->name + (f->gauge ? "" : "_total");
    family(name.c_str(), f->gauge ? "gauge" : "counter", f->help.c_str());
    for (const auto& s : stats) {
      for (const TierStats& t : s.tiers) {
        for (const TierCounter& c : t.counters) {
          if (c.name == f->name) out << name << '{' << labels(s) << tier_label(t) << c.value << '\n';
        }
      }
    }
  }
  auto histogram = [&](const char* name, const char* help, LatencyStats TableStats::*field) {
    family(name, "histogram", help);
    for (const auto& s : stats) {
      const LatencyStats& h = s.*field;
      for (const auto& [bound, count] : h.buckets) {
        out << name << "_bucket{" << labels(s) << ",le=\"" << number(bound) << "\"} " << count << '\n';
      }
      out << name << "_bucket{" << labels(s) << ",le=\"+Inf\"} " << h.count << '\n';
      out << name << "_sum{" << labels(s) << "} " << number(h.sum) << '\n';
      out << name << "_count{" << labels(s) << "} " << h.count << '\n';
    }
  };
  histogram("hps_lookup_latency_seconds", "Host lookup latency, until the rows are complete.", &TableStats::latency);
  histogram("hps_device_call_latency_seconds",
            "Host time of device lookup calls; their rows are ready later, in the caller's stream order.",
            &TableStats::device_call_latency);
  return out.str();
}

std::string to_json(const std::vector<TableStats>& stats) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const TableStats& s : stats) {
    auto per_tier = [&s](std::uint64_t TierStats::*field) {
      nlohmann::ordered_json tiers = nlohmann::ordered_json::object();
      for (const TierStats& t : s.tiers) tiers[t.name] = t.*field;
      return tiers;
    };
    nlohmann::ordered_json table;
    table["model"] = s.model;
    table["table"] = s.table;
    table["lookups"] = s.lookups;
    table["keys"] = s.keys;
    table["hits"] = per_tier(&TierStats::hits);
    table["defaults"] = s.defaults;
    table["updated_keys"] = s.updated_keys;
    table["erased_keys"] = s.erased_keys;
    table["promoted_keys"] = s.promoted_keys;
    const LatencyStats& l = s.latency;
    table["latency_seconds"] = {{"p50", l.p50}, {"p90", l.p90}, {"p99", l.p99}, {"max", l.max}, {"sum", l.sum}};
    table["tier_rows"] = per_tier(&TierStats::rows);
    table["tier_bytes"] = per_tier(&TierStats::bytes);
    // Which tier_rows are estimates (RocksDB's): a count off by a few after erases is not a lost row.
    nlohmann::ordered_json estimated = nlohmann::ordered_json::object();
    for (const TierStats& t : s.tiers) estimated[t.name] = t.rows_estimated;
    table["tier_rows_estimated"] = std::move(estimated);
    const LatencyStats& d = s.device_call_latency;
    table["device_call_latency_seconds"] = {{"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99},
                                            {"max", d.max}, {"sum", d.sum}, {"count", d.count}};
    nlohmann::ordered_json counters = nlohmann::ordered_json::object();
    for (const TierStats& t : s.tiers) {
      nlohmann::ordered_json tier = nlohmann::ordered_json::object();
      for (const TierCounter& c : t.counters) tier[c.name] = c.value;
      counters[t.name] = std::move(tier);
    }
    table["tier_counters"] = std::move(counters);
    out.push_back(std::move(table));
  }
  return out.dump();
}

}  // namespace hps

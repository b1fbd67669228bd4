// The dynamic GPU cache's recency policies on the CPU: a host model of the rules of
// core/src/gpu/dynamic_probe_kernels.cu (when a hit rewrites its slot's 16-bit stamp) and
// dynamic_write_kernels.cu (a new key takes a free slot of its two sets of 8 below the capacity,
// moving a resident to its other set to make room if one can, else replaces the least recent of its
// 16 slots), run sequentially. Moves take one step here (the kernel plans up to two), and a call's
// insertions run one after the other; the three policies share everything else.
//   exact    every hit rewrites a stamp older than its lookup (the policy before 2026-12-05);
//   first    exact recency within 16,384 lookups of the latest eviction, else a stamp is rewritten
//            only once it is kQuietRefreshAge lookups old (the first version of the change, with
//            8,192 lookups);
//   merged   as first, but a cache that is not full keeps exact recency (main, with 2,048).
// The quiet refresh age can be given as the only argument (default 2,048, as main): the scenarios
// then run at that age.
// Printed per scenario and policy: the hit rate over the measured calls, next to an exact LRU cache
// of the same capacity fed the same keys, and the stamp writes per hit (each costs a 32-byte DRAM
// write-back on the GPU).
// Scenarios: (1) gpu_cache_kernels' hit-rate section (2 M keys, Zipf 1.05, caches of 20% and 5%,
// 262,144- and 1,048,576-key calls, 6 warm-up and 6 measured calls), where "first" lost 1.1 points
// on the GPU at 262,144 keys and 20%; (2) a full cache that serves all-hit traffic for 20,000 small
// calls, then takes traffic in which 2% of the keys per call are new: the first evictions after a
// quiet spell.
//
// Build and run (no GPU needed):
//   g++ -std=c++20 -O2 -o /tmp/recency_model benchmarks/recency_model.cpp && /tmp/recency_model [AGE]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "exact_lru.hpp"

namespace {

enum class Policy { kExact, kFirst, kMerged };
const char* name(Policy p) { return p == Policy::kExact ? "exact" : p == Policy::kFirst ? "first" : "merged"; }

constexpr std::uint32_t kRecencyWindow = 1u << 14;
std::uint32_t kQuietRefreshAge = 1u << 11;
constexpr std::uint32_t kStampAheadWindow = 4096;
constexpr int kSlotsPerSet = 8;

std::uint64_t mix(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  return k ^ (k >> 33);
}

std::uint32_t stamp_age(std::uint32_t epoch, std::uint16_t stamp) {
  const std::uint32_t age = (epoch - stamp) & 0xFFFFu;
  return age >= 0x10000u - kStampAheadWindow ? 0u : age;
}

struct Cache {
  Cache(std::size_t capacity, Policy policy) : capacity(capacity), policy(policy) {
    const std::size_t slots = std::max<std::size_t>(static_cast<std::size_t>(std::ceil(capacity / 0.96)), capacity + 1);
    sets = std::max<std::size_t>(2, (slots + kSlotsPerSet - 1) / kSlotsPerSet);
    key.assign(sets * kSlotsPerSet, 0);
    used.assign(sets * kSlotsPerSet, false);
    stamp.assign(sets * kSlotsPerSet, 0);
  }
  std::size_t capacity, sets, occupied = 0;
  Policy policy;
  std::vector<std::uint64_t> key;
  std::vector<bool> used;
  std::vector<std::uint16_t> stamp;
  std::uint32_t epoch = 0;
  std::uint64_t last_eviction = 0;  // (1 << 32) | epoch, 0: none
  std::uint64_t hits = 0, stamp_writes = 0, evictions = 0;

  void candidate_sets(std::uint64_t k, std::size_t& a, std::size_t& b) const {
    const std::uint64_t h = mix(k);
    a = static_cast<std::size_t>((static_cast<unsigned __int128>(h) * sets) >> 64);
    b = static_cast<std::size_t>((static_cast<unsigned __int128>(mix(h ^ 0x9E3779B97F4A7C15ULL)) * (sets - 1)) >> 64);
    b += b >= a ? 1 : 0;
  }
  long find(std::uint64_t k) const {
    std::size_t sa, sb;
    candidate_sets(k, sa, sb);
    for (std::size_t s : {sa, sb})
      for (int j = 0; j < kSlotsPerSet; ++j)
        if (used[s * kSlotsPerSet + j] && key[s * kSlotsPerSet + j] == k) return static_cast<long>(s * kSlotsPerSet + j);
    return -1;
  }
  bool exact() const {
    if (policy == Policy::kExact) return true;
    if (last_eviction != 0 && epoch - static_cast<std::uint32_t>(last_eviction) < kRecencyWindow) return true;
    return policy == Policy::kMerged && occupied < capacity;
  }
  /// One lookup call: returns its hits; `misses` gets its distinct missed keys in order.
  std::size_t lookup(const std::vector<std::uint64_t>& batch, std::vector<std::uint64_t>& misses) {
    ++epoch;
    const bool keep_exact = exact();  // read once per call, as the kernel's threads do at its start
    std::size_t call_hits = 0;
    misses.clear();
    for (const std::uint64_t k : batch) {
      const long slot = find(k);
      if (slot < 0) {
        misses.push_back(k);
        continue;
      }
      ++call_hits;
      if (stamp_age(epoch, stamp[slot]) >= (keep_exact ? 1u : kQuietRefreshAge)) {
        stamp[slot] = static_cast<std::uint16_t>(epoch);
        ++stamp_writes;
      }
    }
    std::sort(misses.begin(), misses.end());
    misses.erase(std::unique(misses.begin(), misses.end()), misses.end());
    hits += call_hits;
    return call_hits;
  }
  /// Both sets full: moves a resident of set a or b whose other set has a free slot there, and
  /// returns the slot it left (-1: none can move).
  long make_room(std::size_t a, std::size_t b) {
    for (std::size_t s : {a, b}) {
      for (int j = 0; j < kSlotsPerSet; ++j) {
        const std::size_t from = s * kSlotsPerSet + j;
        std::size_t ra, rb;
        candidate_sets(key[from], ra, rb);
        const std::size_t other = ra == s ? rb : ra;
        for (int i = 0; i < kSlotsPerSet; ++i) {
          const std::size_t to = other * kSlotsPerSet + i;
          if (used[to]) continue;
          key[to] = key[from], stamp[to] = stamp[from], used[to] = true;
          used[from] = false;
          return static_cast<long>(from);
        }
      }
    }
    return -1;
  }
  /// The insertion of a call's misses (the write kernel, at the call's epoch).
  void insert(const std::vector<std::uint64_t>& keys) {
    for (const std::uint64_t k : keys) {
      if (find(k) >= 0) continue;
      std::size_t sa, sb;
      candidate_sets(k, sa, sb);
      long target = -1;
      if (occupied < capacity) {
        int free_a = 0, free_b = 0;
        for (int j = 0; j < kSlotsPerSet; ++j) free_a += !used[sa * kSlotsPerSet + j], free_b += !used[sb * kSlotsPerSet + j];
        const std::size_t s = free_b > free_a ? sb : sa;
        for (int j = 0; j < kSlotsPerSet && target < 0; ++j)
          if (!used[s * kSlotsPerSet + j]) target = static_cast<long>(s * kSlotsPerSet + j);
        if (target < 0) target = make_room(sa, sb);
        if (target >= 0) ++occupied;
      }
      if (target < 0) {  // at the capacity, or both sets full: replace the least recent of the 16
        std::uint32_t oldest = 0;
        for (std::size_t s : {sa, sb})
          for (int j = 0; j < kSlotsPerSet; ++j) {
            const std::size_t slot = s * kSlotsPerSet + j;
            const std::uint32_t score = used[slot] ? stamp_age(epoch, stamp[slot]) + 1 : 0;
            if (score > oldest) oldest = score, target = static_cast<long>(slot);
          }
        if (target < 0) continue;
        last_eviction = (std::uint64_t{1} << 32) | epoch;
        ++evictions;
      }
      key[target] = k;
      used[target] = true;
      stamp[target] = static_cast<std::uint16_t>(epoch);
    }
  }
};

struct Zipf {
  Zipf(std::size_t n, double alpha) : cdf(n) {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) cdf[i] = (sum += std::pow(static_cast<double>(i + 1), -alpha));
    for (auto& c : cdf) c /= sum;
  }
  std::vector<double> cdf;
  std::size_t draw(std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    return std::min<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin(), cdf.size() - 1);
  }
};

/// Scenario 1: the kernel benchmark's hit-rate section.
void benchmark_section() {
  const std::size_t keys_total = 2000000;
  Zipf zipf(keys_total, 1.05);
  std::printf("## gpu_cache_kernels' hit-rate section: %zu keys, Zipf 1.05, 6 warm-up + 6 measured calls\n", keys_total);
  std::printf("%9s %5s | %8s %8s %8s | %8s | stamp writes per hit (exact / first / merged)\n", "B", "cache", "exact",
              "first", "merged", "LRU");
  for (const std::size_t batch : {std::size_t{262144}, std::size_t{1048576}}) {
    std::mt19937_64 rng(batch);
    std::vector<std::vector<std::uint64_t>> calls(12, std::vector<std::uint64_t>(batch));
    for (auto& call : calls)
      for (auto& k : call) k = mix(zipf.draw(rng) + 7);
    for (const double fraction : {0.2, 0.05}) {
      const auto capacity = static_cast<std::size_t>(fraction * static_cast<double>(keys_total));
      double rate[3], writes[3];
      for (const Policy policy : {Policy::kExact, Policy::kFirst, Policy::kMerged}) {
        Cache cache(capacity, policy);
        std::vector<std::uint64_t> misses;
        std::size_t measured_hits = 0, measured = 0;
        std::uint64_t hits_before = 0, writes_before = 0;
        for (std::size_t c = 0; c < calls.size(); ++c) {
          if (c == 6) hits_before = cache.hits, writes_before = cache.stamp_writes;
          const std::size_t h = cache.lookup(calls[c], misses);
          cache.insert(misses);
          if (c >= 6) measured_hits += h, measured += batch;
        }
        const int p = static_cast<int>(policy);
        rate[p] = static_cast<double>(measured_hits) / static_cast<double>(measured);
        writes[p] = static_cast<double>(cache.stamp_writes - writes_before) /
                    static_cast<double>(std::max<std::uint64_t>(1, cache.hits - hits_before));
      }
      ExactLru lru(capacity);
      std::size_t lru_hits = 0, measured = 0;
      for (std::size_t c = 0; c < calls.size(); ++c) {
        const std::size_t h = lru.access(calls[c].data(), calls[c].size());
        if (c >= 6) lru_hits += h, measured += batch;
      }
      std::printf("%9zu %4.0f%% | %8.4f %8.4f %8.4f | %8.4f | %.3f / %.3f / %.3f\n", batch, 100 * fraction, rate[0],
                  rate[1], rate[2], static_cast<double>(lru_hits) / static_cast<double>(measured), writes[0], writes[1],
                  writes[2]);
    }
  }
}

/// Scenario 2: a full cache, a quiet spell of all-hit calls, then calls with new keys.
void quiet_spell() {
  const std::size_t capacity = 200000, quiet_calls = 20000, batch = 4096, churn_calls = 400;
  std::printf("\n## a full cache of %zu keys: %zu all-hit calls of %zu Zipf keys, then %zu calls in which 2%% of "
              "the keys are new\n", capacity, quiet_calls, batch, churn_calls);
  std::printf("%8s | %10s %10s | %12s | stamp writes per hit in the quiet spell\n", "policy", "first 50", "all 400",
              "LRU all 400");
  Zipf zipf(capacity, 1.05);
  for (const Policy policy : {Policy::kExact, Policy::kFirst, Policy::kMerged}) {
    std::mt19937_64 rng(42);
    Cache cache(capacity, policy);
    ExactLru lru(capacity);
    std::vector<std::uint64_t> all(capacity);
    for (std::size_t i = 0; i < capacity; ++i) all[i] = mix(i + 1);
    cache.insert(all);  // exactly the capacity, as gpucacheper 1.0 over the whole table
    // The kernel's two-step moves fit `capacity` keys without an eviction; this model's one-step
    // moves drop a few dozen, so the cache counts as full at what it holds, with no eviction yet.
    cache.capacity = cache.occupied;
    cache.last_eviction = 0;
    lru.access(all.data(), all.size());
    std::vector<std::uint64_t> calls(batch), misses;
    for (std::size_t c = 0; c < quiet_calls; ++c) {
      for (auto& k : calls) k = all[zipf.draw(rng)];
      cache.lookup(calls, misses);
      lru.access(calls.data(), calls.size());
    }
    const double quiet_writes = static_cast<double>(cache.stamp_writes) / static_cast<double>(cache.hits);
    std::uint64_t next_new = capacity + 1;
    std::size_t hits_50 = 0, hits_all = 0, lru_all = 0;
    for (std::size_t c = 0; c < churn_calls; ++c) {
      for (auto& k : calls) {
        k = std::uniform_real_distribution<double>(0.0, 1.0)(rng) < 0.02 ? mix(next_new++) : all[zipf.draw(rng)];
      }
      const std::size_t h = cache.lookup(calls, misses);
      cache.insert(misses);
      const std::size_t l = lru.access(calls.data(), calls.size());
      if (c < 50) hits_50 += h;
      hits_all += h, lru_all += l;
    }
    std::printf("%8s | %10.4f %10.4f | %12.4f | %.4f\n", name(policy), static_cast<double>(hits_50) / (50.0 * batch),
                static_cast<double>(hits_all) / static_cast<double>(churn_calls * batch),
                static_cast<double>(lru_all) / static_cast<double>(churn_calls * batch), quiet_writes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) kQuietRefreshAge = static_cast<std::uint32_t>(std::strtoul(argv[1], nullptr, 10));
  std::printf("# recency_model: quiet refresh age %u lookups, recency window %u lookups\n\n", kQuietRefreshAge,
              kRecencyWindow);
  benchmark_section();
  quiet_spell();
  return 0;
}

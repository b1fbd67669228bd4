// The host-tier index's probe lengths while keys come and go: a host model of the rules of
// core/src/gpu/host_tier_kernels.cu (linear probing; an add takes the first tombstone of its key's
// probe, else the empty slot that ends it; a removal leaves a tombstone; the sweep empties each
// tombstone that no live entry's probe passes), run sequentially on the CPU.
//
// The index starts at 0.7 live entries per slot (the load it is sized for). Each step removes a
// random live key and adds a new one, as a hash map at its capacity does when it evicts for a new
// key. Printed after every half index size of steps: the empty and tombstone shares of the slots
// and the mean probe length of a key that is absent (slots read until an empty one, at most all), the
// mean and longest probe of the live keys, each also in steps of the miss kernel's group probe (8
// entries a step, read at once).
// With --sweep, every live key is looked up after each sweep (exit status 1 if one is lost).
// With --rebuild, the same cadence rebuilds the index instead: a new generation of the same size
// takes every live entry of the old one in slot order (launch_tier_rehash's rule; the growth's
// machinery, host_tier_index.cpp), so it starts without tombstones; every live key is looked up
// after each rebuild too.
//
// Build and run (no GPU needed):
//   g++ -std=c++20 -O2 -o /tmp/tier_index_churn benchmarks/tier_index_churn.cpp
//   /tmp/tier_index_churn            # without sweeps
//   /tmp/tier_index_churn --sweep    # a sweep after removals of 1/16 of the slots (as host_tier_index.cpp)
//   /tmp/tier_index_churn --rebuild  # a same-size rebuild at that cadence instead (not in host_tier_index.cpp)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

enum : std::uint8_t { kEmpty, kLive, kTombstone };

struct Index {
  explicit Index(std::uint64_t n) : state(n, kEmpty), key(n), slots(n) {}
  std::vector<std::uint8_t> state;
  std::vector<std::uint64_t> key;
  std::uint64_t slots;

  std::uint64_t home(std::uint64_t k) const {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(k) * slots) >> 64);
  }
  std::uint64_t next(std::uint64_t s) const { return s + 1 == slots ? 0 : s + 1; }

  void add(std::uint64_t k) {
    std::uint64_t s = home(k), tombstone = slots;
    for (std::uint64_t probes = 0; probes < slots && state[s] != kEmpty; ++probes, s = next(s)) {
      if (state[s] == kTombstone && tombstone == slots) tombstone = s;
    }
    if (tombstone != slots) s = tombstone;
    state[s] = kLive;
    key[s] = k;
  }
  void remove(std::uint64_t k) {
    std::uint64_t s = home(k);
    for (std::uint64_t probes = 0; probes < slots && state[s] != kEmpty; ++probes, s = next(s)) {
      if (state[s] == kLive && key[s] == k) {
        state[s] = kTombstone;
        return;
      }
    }
  }
  // The rehash kernel's rule into a fresh index of the same size: every live entry, in slot order.
  void rebuild() {
    Index fresh(slots);
    for (std::uint64_t s = 0; s < slots; ++s) {
      if (state[s] == kLive) fresh.add(key[s]);
    }
    *this = std::move(fresh);
  }
  // The sweep kernel's rule, tombstone by tombstone (its walk length cap left out).
  void sweep() {
    for (std::uint64_t t = 0; t < slots; ++t) {
      if (state[t] != kTombstone) continue;
      bool passed = false;
      std::uint64_t j = next(t);
      for (std::uint64_t distance = 1; distance < slots && state[j] != kEmpty && !passed; ++distance, j = next(j)) {
        if (state[j] != kLive) continue;
        const std::uint64_t h = home(key[j]);
        passed = (j >= h ? j - h : j + slots - h) >= distance;
      }
      if (!passed) state[t] = kEmpty;
    }
  }
  bool finds(std::uint64_t k) const {
    std::uint64_t s = home(k);
    for (std::uint64_t probes = 0; probes < slots && state[s] != kEmpty; ++probes, s = next(s)) {
      if (state[s] == kLive && key[s] == k) return true;
    }
    return false;
  }
  /// Slots a lookup reads: mean over 20,000 absent keys, and mean and largest over the live keys,
  /// each also in dependent reads of the miss kernel's group probe (8 entries a step).
  struct Probes {
    double absent, absent_steps, present, present_steps;
    std::uint64_t longest;
  };
  Probes probes(std::mt19937_64& rng, const std::vector<std::uint64_t>& live) const {
    constexpr std::uint64_t kWindow = 8;
    Probes p{};
    for (int i = 0; i < 20000; ++i) {
      std::uint64_t s = home(rng()), length = 1;
      for (; length < slots && state[s] != kEmpty; ++length) s = next(s);
      p.absent += static_cast<double>(length);
      p.absent_steps += static_cast<double>((length + kWindow - 1) / kWindow);
    }
    p.absent /= 20000;
    p.absent_steps /= 20000;
    for (std::uint64_t k : live) {
      std::uint64_t s = home(k), length = 1;
      for (; length < slots && !(state[s] == kLive && key[s] == k); ++length) s = next(s);
      p.present += static_cast<double>(length);
      p.present_steps += static_cast<double>((length + kWindow - 1) / kWindow);
      p.longest = std::max(p.longest, length);
    }
    p.present /= static_cast<double>(live.size());
    p.present_steps /= static_cast<double>(live.size());
    return p;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const bool rebuilds = argc > 1 && std::strcmp(argv[1], "--rebuild") == 0;
  const bool sweeps = rebuilds || (argc > 1 && std::strcmp(argv[1], "--sweep") == 0);
  const std::uint64_t slots = std::uint64_t{1} << 16;
  Index index(slots);
  std::mt19937_64 rng(1);
  std::vector<std::uint64_t> live;
  for (std::uint64_t i = 0; i < slots * 7 / 10; ++i) {
    live.push_back(rng());
    index.add(live.back());
  }
  std::printf("# tier_index_churn: %llu slots, 0.7 live per slot, %s\n", static_cast<unsigned long long>(slots),
              rebuilds ? "a same-size rebuild after removals of 1/16 of the slots"
              : sweeps ? "a sweep after removals of 1/16 of the slots"
                       : "no sweeps");
  // A line per state: the shares of empty slots and tombstones and the probes' lengths.
  const auto report = [&](const char* when) {
    std::uint64_t empty = 0, tombstones = 0;
    for (auto s : index.state) {
      empty += s == kEmpty;
      tombstones += s == kTombstone;
    }
    const Index::Probes p = index.probes(rng, live);
    std::printf("%s: empty %.3f  tombstones %.3f  absent-key probe %8.1f slots (%7.1f steps of 8);"
                " live keys %5.2f slots (%4.2f steps), longest %5llu (%4llu steps)\n",
                when, static_cast<double>(empty) / slots, static_cast<double>(tombstones) / slots, p.absent,
                p.absent_steps, p.present, p.present_steps, static_cast<unsigned long long>(p.longest),
                static_cast<unsigned long long>((p.longest + 7) / 8));
  };
  std::uint64_t removed_since_sweep = 0;
  for (int half = 0; half <= 20; ++half) {
    char when[64];
    std::snprintf(when, sizeof when, "steps %4.1f x slots", half * 0.5);
    report(when);  // with sweeps or rebuilds: just after one (every 1/16 of the slots; half of them is 8)
    for (std::uint64_t step = 0; step < slots / 2; ++step) {
      const std::size_t victim = rng() % live.size();
      index.remove(live[victim]);
      live[victim] = rng();
      index.add(live[victim]);
      if (sweeps && ++removed_since_sweep >= slots / 16) {
        if (step + 1 == slots / 2) report(rebuilds ? "    just before a rebuild" : "    just before a sweep");
        if (rebuilds) {
          index.rebuild();
        } else {
          index.sweep();
        }
        removed_since_sweep = 0;
        for (std::uint64_t k : live) {  // the rule lost no key
          if (!index.finds(k)) {
            std::printf("FAILED: key %llu is no longer found after a %s\n", static_cast<unsigned long long>(k),
                        rebuilds ? "rebuild" : "sweep");
            return 1;
          }
        }
      }
    }
  }
}

// Kernels of the host-tier index. Design and memory-ordering argument: docs/gpu_cache.md,
// "Misses served from the CPU-memory tier".
//
// Readers of a host record (record_hooks.hpp, reader side, at system scope): the group's lanes
// load the record's pieces, header and key included, all requested at once (one round trip over
// PCIe; loads of mapped host memory are not ordered among themselves, so nothing may depend on
// their order). The lanes add up the checksum terms of what they read
// (detail/record_checksum.hpp); the group accepts the row when the header is not busy and holds
// the checksum of the key and row read, and the key is the wanted one. A read that mixed two
// states of the record fails the check (but for about 2^-62) and is retried.
#include <cuda_fp16.h>

#include <algorithm>

#include "detail/record_checksum.hpp"
#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/host_tier_kernels.hpp"
#include "gpu/probe_dispatch.cuh"
#include "hps/tiers/record_hooks.hpp"

namespace hps::cuda {
namespace {

constexpr int kApplyThreads = 256;
constexpr int kLookupThreads = 256;
/// Attempts to read a record stable before its key is left to the host path (a writer keeps
/// rewriting it), and, where there is no host path, before the default row is served instead (and
/// counted as gave_up): with the back-off below, about a second.
constexpr int kAttempts = 32;
constexpr int kPatientAttempts = 1 << 14;  // x 65 us of back-off: about a second

__device__ __forceinline__ std::uint64_t home_of(std::int64_t key, std::uint64_t slots) {
  return reduce_hash(rehash(murmur3_fmix64(key) ^ 0x5851F42D4C957F2DULL), slots);
}

/// The slot after s (linear probing wraps round the index).
__device__ __forceinline__ std::uint64_t next_slot(std::uint64_t s, std::uint64_t slots) {
  return s + 1 == slots ? 0 : s + 1;
}

__device__ __forceinline__ TierEntry load_entry(const TierEntry* entry) {
  const uint4 v = load_relaxed_v4(entry);
  return TierEntry{join_key(v.x, v.y), (static_cast<std::uint64_t>(v.w) << 32) | v.z};
}

/// A generation's descriptor, read as load_entry reads an entry (both are two 8-byte words).
__device__ __forceinline__ TierTable load_table(const TierTable* descriptor) {
  const TierEntry words = load_entry(reinterpret_cast<const TierEntry*>(descriptor));
  return TierTable{reinterpret_cast<TierEntry*>(words.key), words.record};
}

/// Entries a group reads per probe step: one 128-byte line of 16-byte entries (or the group's width).
template <int kLanes>
constexpr unsigned kProbeWindow = kLanes < 8 ? kLanes : 8;

/// The record address of `key`, or 0, found by the group together: lane r of the group reads entry
/// home + step + r, so a probe of L slots takes L / kProbeWindow dependent reads instead of L (under
/// churn an absent key's probe runs to tens of slots: benchmarks/tier_index_churn.cpp). The answer is
/// the first entry in probe order that is empty (absent) or holds the key, as a walk one entry at a
/// time would give from the same values. An entry read torn (an adder rewriting it) can only name a
/// record whose key the reader checks; a claimed entry is skipped (its add is still in progress).
/// Group-uniform: every lane of the group calls it and gets the same answer.
template <int kLanes>
__device__ std::uint64_t find_record(const TierTable& table, std::int64_t key, unsigned rank,
                                     std::uint32_t group_mask) {
  constexpr unsigned kWindow = kProbeWindow<kLanes>;
  const std::uint64_t slots = table.slots;
  const std::uint64_t home = home_of(key, slots);
  for (std::uint64_t step = 0; step < slots; step += kWindow) {
    bool ends = false;
    std::uint64_t record = 0;
    if (rank < kWindow && step + rank < slots) {
      std::uint64_t s = home + step + rank;  // < 2 x slots
      if (s >= slots) s -= slots;
      const TierEntry e = load_entry(table.entries + s);
      const bool holds_key = e.record >= kTierFirstAddress && e.key == key;
      ends = holds_key || e.record == kTierEmpty;
      record = holds_key ? e.record : 0;
    }
    const std::uint32_t ending = __ballot_sync(group_mask, ends) & group_mask;
    if (ending != 0) return __shfl_sync(group_mask, record, __ffs(ending) - 1);
  }
  return 0;
}

/// Points `key` at `record` in `table`: the key's own entry if it has one (its removal did not
/// match), else the first tombstone or empty entry of its probe, claimed with a CAS. False: full.
__device__ bool add_entry(const TierTable& table, std::int64_t key, std::uint64_t record) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    std::uint64_t s = home_of(key, table.slots);
    std::uint64_t target = ~0ull, expected = kTierEmpty, first_tombstone = ~0ull;
    for (std::uint64_t probes = 0; probes < table.slots; ++probes) {
      const TierEntry e = load_entry(table.entries + s);
      if (e.record == kTierEmpty) {
        target = s;
        break;
      }
      if (e.record == kTierTombstone) {
        if (first_tombstone == ~0ull) first_tombstone = s;
      } else if (e.record >= kTierFirstAddress && e.key == key) {
        // The key is there already (its removal did not match): point it at the new record.
        atomicExch(reinterpret_cast<unsigned long long*>(&table.entries[s].record), record);
        return true;
      }
      s = next_slot(s, table.slots);
    }
    // Reuse the first tombstone of the chain (the key is in none of its entries: the scan
    // reached an empty entry, or went all round).
    if (first_tombstone != ~0ull) target = first_tombstone, expected = kTierTombstone;
    if (target == ~0ull) return false;  // full
    auto* word = reinterpret_cast<unsigned long long*>(&table.entries[target].record);
    if (atomicCAS(word, expected, kTierClaimed) != expected) continue;  // another adder took it: rescan
    store_relaxed_u64(&table.entries[target].key, static_cast<std::uint64_t>(key));
    __threadfence();  // the key before the address: a reader that sees the address sees the key
    store_relaxed_u64(&table.entries[target].record, record);
    return true;
  }
  return false;
}

__global__ void tier_add_kernel(const TierTable table, TierCounters* counters, const std::int64_t* keys,
                                const std::uint64_t* records, std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    if (!add_entry(table, keys[i], records[i])) atomicAdd(&counters->failed_adds, 1ull);
  }
}

/// Every live entry of `from` into `to` (empty, larger): the index's next generation.
__global__ void tier_rehash_kernel(const TierTable from, const TierTable to, TierCounters* counters) {
  for (std::uint64_t s = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; s < from.slots;
       s += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const TierEntry e = load_entry(from.entries + s);
    if (e.record >= kTierFirstAddress && !add_entry(to, e.key, e.record)) atomicAdd(&counters->failed_adds, 1ull);
  }
}

/// Writes the new generation's descriptor, then (release) its address into the current word.
__global__ void tier_publish_kernel(TierTable* descriptor, const TierTable table, const TierTable** current) {
  *descriptor = table;
  store_release_u64(current, reinterpret_cast<std::uint64_t>(descriptor));
}

/// The generation the lookup reads: the group's first lane loads the current word (acquire) and the
/// descriptor it names, and shares both (group-uniform; the other lanes read nothing).
__device__ __forceinline__ TierTable current_table(const HostTierView& view, std::uint32_t group_mask, int group_base,
                                                   const TierTable** generation) {
  unsigned long long address = 0;
  TierTable table{};
  if ((threadIdx.x % 32) == static_cast<unsigned>(group_base)) {
    address = load_acquire_u64(view.current);
    table = load_table(reinterpret_cast<const TierTable*>(address));
  }
  *generation = reinterpret_cast<const TierTable*>(__shfl_sync(group_mask, address, group_base));
  const auto entries = reinterpret_cast<unsigned long long>(table.entries);
  return TierTable{reinterpret_cast<TierEntry*>(__shfl_sync(group_mask, entries, group_base)),
                   static_cast<std::uint64_t>(__shfl_sync(group_mask, static_cast<unsigned long long>(table.slots),
                                                          group_base))};
}

/// Whether the index grew since the group loaded *generation; if so, loads the new one. An older
/// generation no longer receives the tier's changes, so a key absent there, or whose record it
/// names is dead, is asked again in the current one before it is called absent (generations
/// never come back, so this ends). A row found in any generation is right: the record's header
/// and key say it is live with that key when it is read.
__device__ __forceinline__ bool newer_generation(const HostTierView& view, std::uint32_t group_mask, int group_base,
                                                 const TierTable** generation, TierTable* table) {
  const TierTable* seen = *generation;
  const TierTable now = current_table(view, group_mask, group_base, generation);
  if (*generation == seen) return false;
  *table = now;
  return true;
}

__global__ void tier_remove_kernel(const TierTable table, const std::int64_t* keys, const std::uint64_t* records,
                                   std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t key = keys[i];
    std::uint64_t s = home_of(key, table.slots);
    for (std::uint64_t probes = 0; probes < table.slots; ++probes) {
      const TierEntry e = load_entry(table.entries + s);
      if (e.record == kTierEmpty) break;
      if (e.record >= kTierFirstAddress && e.key == key) {
        // Only the entry of that record: a later add of the key may have pointed it elsewhere.
        atomicCAS(reinterpret_cast<unsigned long long*>(&table.entries[s].record), records[i], kTierTombstone);
        break;
      }
      s = next_slot(s, table.slots);
    }
  }
}

// One thread per tombstone t: walks on from t to the run's next empty slot. A live entry on the way
// whose home lies at or before t (its distance from home reaches back to t) probes through t: t
// stays. None: t becomes empty. Threads of one run may empty tombstones beside each other at once;
// a walk that meets a tombstone emptied meanwhile stops there, which is right, since an entry
// beyond that one whose probe passed t would have passed it too.
constexpr std::uint64_t kLongestSweepWalk = 1 << 12;

__global__ void tier_sweep_kernel(const TierTable table, TierCounters* counters) {
  unsigned long long swept = 0;
  const std::uint64_t slots = table.slots;
  for (std::uint64_t t = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; t < slots;
       t += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    if (load_entry(table.entries + t).record != kTierTombstone) continue;
    bool passed = false;
    std::uint64_t j = next_slot(t, slots);
    for (std::uint64_t distance = 1; !passed; ++distance) {
      if (distance == slots || distance > kLongestSweepWalk) {
        passed = true;  // keep t: a run this long is left as it is
        break;
      }
      const TierEntry e = load_entry(table.entries + j);
      if (e.record == kTierEmpty) break;
      if (e.record == kTierClaimed) {
        passed = true;  // no adder runs beside a sweep; keep t if one ever did
      } else if (e.record >= kTierFirstAddress) {
        const std::uint64_t home = home_of(e.key, slots);
        const std::uint64_t from_home = j >= home ? j - home : j + slots - home;
        passed = from_home >= distance;
      }
      j = next_slot(j, slots);
    }
    if (passed) continue;
    auto* word = reinterpret_cast<unsigned long long*>(&table.entries[t].record);
    swept += atomicCAS(word, kTierTombstone, kTierEmpty) == kTierTombstone ? 1 : 0;
  }
  if (swept != 0) atomicAdd(&counters->swept, swept);
}

enum class Outcome { kFound, kAbsent, kLeft };

/// How a group's lanes share a record: its words [0, row_offset / 4 + dim) (header, key, access
/// metadata, row) in pieces of kPieceBytes, piece p read by lane p % kLanes. The header and key
/// ride with the row's pieces, so no lane issues more than ceil(pieces / kLanes) loads: the loads of
/// one thread to host memory are not all in flight at once (benchmarks/zero_copy_gather.cu).
template <int kLanes, int kPieceBytes>
struct RecordShare {
  static constexpr std::uint32_t kWords = kPieceBytes / 4;
  static constexpr std::uint32_t kKeyWord = 2;  // the key at byte 8 (record_hooks.hpp)
  std::uint32_t row_word, end_word, pieces;
  __device__ RecordShare(const HostTierView& view)
      : row_word(view.row_offset / 4), end_word(view.row_offset / 4 + view.dim),
        pieces((view.row_offset / 4 + view.dim + kWords - 1) / kWords) {}
  /// Calls f(element) for each row element in the pieces of lane `rank`.
  template <typename F>
  __device__ __forceinline__ void for_each_element(unsigned rank, F&& f) const {
    for (std::uint32_t p = rank; p < pieces; p += kLanes) {
#pragma unroll
      for (std::uint32_t w = 0; w < kWords; ++w) {
        const std::uint32_t q = p * kWords + w;
        if (q >= row_word && q < end_word) f(q - row_word);
      }
    }
  }
};

/// kLanes lanes read one record, each its RecordShare. Groups of a warp run different numbers of
/// iterations, so every shuffle and ballot names the group's lanes only.
template <int kLanes, int kPieceBytes>
__global__ void __launch_bounds__(kLookupThreads) tier_lookup_kernel(const HostTierView view, const bool half,
                                                                     const TierSink sink, float* out) {
  using Share = RecordShare<kLanes, kPieceBytes>;
  const unsigned lane = threadIdx.x % 32;
  const unsigned rank = lane % kLanes;
  const int group_base = static_cast<int>(lane - rank);
  const std::uint32_t group_mask = kLanes == 32 ? 0xFFFFFFFFu : ((1u << kLanes) - 1u) << group_base;
  const std::uint64_t group = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) / kLanes;
  const std::uint64_t groups = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / kLanes;
  const unsigned long long misses = sink.status->miss_count;  // the probe, earlier on this stream, is complete
  const std::uint32_t dim = view.dim;
  const Share share(view);
  const int attempts = sink.absent_is_default ? kPatientAttempts : kAttempts;
  // The whole block: nothing to read (most blocks of a call with few misses).
  if (blockIdx.x * static_cast<std::uint64_t>(blockDim.x / kLanes) >= misses) return;
  // A reader of the index from before its first read of the current word to after its last read of
  // a generation: the index frees an older generation only when it counts no reader after
  // publishing a newer one (host_tier_index.cpp). The fence orders the count before those reads.
  if (threadIdx.x == 0) {
    atomicAdd(&view.counters->readers, 1ull);
    __threadfence();
  }
  __syncthreads();
  const TierTable* generation = nullptr;
  TierTable table{};
  if (group < misses) table = current_table(view, group_mask, group_base, &generation);

  for (std::uint64_t i = group; i < misses; i += groups) {
    const std::int64_t key = sink.miss_keys[i];
    const std::uint32_t pos = sink.miss_positions[i];
    float* dst = out + static_cast<std::uint64_t>(pos) * dim;
    Outcome outcome = Outcome::kLeft;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      // The group probes the index together; all lanes then read the same record (group-uniform).
      const std::uint64_t record = find_record<kLanes>(table, key, rank, group_mask);
      if (record == 0 && newer_generation(view, group_mask, group_base, &generation, &table)) continue;
      if (record == 0) {
        outcome = Outcome::kAbsent;
        break;
      }
      const char* rec = reinterpret_cast<const char*>(record);
      // One round trip: every lane's pieces in flight at once, two at a time per lane.
      std::uint64_t sum = 0, header = 0, seen_key = 0;
      // Takes the words of piece p: header and key bits, the checksum terms of key and row, and the
      // row's elements to the output (overwritten by a retry, the default or the host path unless
      // the row is accepted). Access metadata and padding are not covered.
      const auto take = [&](const SysPiece<kPieceBytes>& piece, std::uint32_t p) {
#pragma unroll
        for (std::uint32_t w = 0; w < Share::kWords; ++w) {
          const std::uint32_t q = p * Share::kWords + w;
          const std::uint32_t word = piece.w[w];
          if (q < Share::kKeyWord) {
            header |= static_cast<std::uint64_t>(word) << (32 * q);
          } else if (q < Share::kKeyWord + 2) {
            const bool low = q == Share::kKeyWord;
            seen_key |= static_cast<std::uint64_t>(word) << (low ? 0 : 32);
            sum += record_checksum::term(low ? record_checksum::kKeyLowIndex : record_checksum::kKeyHighIndex, word);
          } else if (q >= share.row_word && q < share.end_word) {
            const std::uint32_t e = q - share.row_word;
            sum += record_checksum::term(e, word);
            float v = __uint_as_float(word);
            if (half) v = round_to_half(v);
            dst[e] = v;
          }
        }
      };
      for (std::uint32_t p = rank; p < share.pieces; p += 2 * kLanes) {
        const bool second = p + kLanes < share.pieces;
        const auto a = load_relaxed_sys_piece<kPieceBytes>(rec + static_cast<std::size_t>(p) * kPieceBytes);
        SysPiece<kPieceBytes> b{};
        if (second) b = load_relaxed_sys_piece<kPieceBytes>(rec + static_cast<std::size_t>(p + kLanes) * kPieceBytes);
        take(a, p);
        if (second) take(b, p + kLanes);
      }
#pragma unroll
      for (int offset = 1; offset < kLanes; offset *= 2) {
        sum += __shfl_xor_sync(group_mask, sum, offset);
        header |= __shfl_xor_sync(group_mask, header, offset);
        seen_key |= __shfl_xor_sync(group_mask, seen_key, offset);
      }
      const bool whole = (header & kRecordBusy) == 0 &&
                         record_checksum::header_bits(sum) == (header & ~record_checksum::kFlagBits);
      if (whole && (header & kRecordLive) != 0 && static_cast<std::int64_t>(seen_key) == key) {
        outcome = Outcome::kFound;
        break;
      }
      if (whole && newer_generation(view, group_mask, group_base, &generation, &table)) continue;
      if (whole) {
        // Dead, or reused by another key: this key was removed from the record after the index
        // was read, and its removal from the index is still on its way (the tier call that
        // removed it has not returned). Absent is a state the key held during this lookup.
        outcome = Outcome::kAbsent;
        break;
      }
      // A writer is rewriting the record: back off a little and read the index again.
      __nanosleep(attempt < 10 ? 64u << attempt : 65536u);
    }
    if (outcome == Outcome::kLeft && sink.absent_is_default) {
      if (rank == 0) atomicAdd(&view.counters->gave_up, 1ull);
      outcome = Outcome::kAbsent;
    }
    if (outcome == Outcome::kAbsent && !sink.absent_is_default) outcome = Outcome::kLeft;

    if (outcome == Outcome::kAbsent) {
      const float v = half ? round_to_half(view.default_value) : view.default_value;
      share.for_each_element(rank, [&](std::uint32_t e) { dst[e] = v; });
      if (rank == 0) atomicAdd(&view.counters->defaults_served, 1ull);
    } else if (outcome == Outcome::kLeft) {
      if (rank == 0) {
        const unsigned long long at = atomicAdd(&sink.status->left_count, 1ull);
        sink.left_keys[at] = key;
        sink.left_positions[at] = pos;
        if (sink.eager_keys != nullptr && at < kEagerMissKeys) sink.eager_keys[at] = key;
      }
    } else {
      unsigned long long at = 0;
      if (rank == 0) {
        atomicAdd(&view.counters->rows_served, 1ull);
        if (sink.insert_room > 0) at = atomicAdd(&sink.status->insert_count, 1ull);
      }
      at = __shfl_sync(group_mask, at, group_base);
      if (sink.insert_room > 0 && at < sink.insert_room) {
        if (rank == 0) sink.insert_keys[at] = key;
        float* staged = sink.insert_rows + at * dim;
        share.for_each_element(rank, [&](std::uint32_t e) { staged[e] = dst[e]; });  // this lane's own writes
      }
    }
  }
  __syncthreads();  // every group's reads of the index are done
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(&view.counters->readers, ~0ull);  // minus one
  }
}

template <int kLanes, int kPieceBytes>
void launch_lookup(const HostTierView& view, bool half, const TierSink& sink, float* out, std::uint64_t max_misses,
                   int sm_count, cudaStream_t stream) {
  const auto kernel = tier_lookup_kernel<kLanes, kPieceBytes>;
  // The miss count is on the device, so the grid is sized for every key missing; most blocks of a
  // call with few misses find nothing to do and exit. A few blocks per SM keep thousands of rows
  // in flight, more than PCIe's bandwidth-delay product (about 56 KB at 28 GB/s and 2 us); 2 or 8
  // blocks per SM measured the same at 26,624 and 262,144 keys (benchmarks/RESULTS.md).
  static const int per_sm = std::min(4, resident_blocks_per_sm(kernel, kLookupThreads));
  const unsigned blocks = grid_blocks(max_misses, kLookupThreads / kLanes, sm_count, per_sm);
  kernel<<<blocks, kLookupThreads, 0, stream>>>(view, half, sink, out);
  HPS_CUDA_CHECK_LAUNCH();
}

/// Bytes per load: 16 where every record starts 16-byte aligned (records start at page starts plus
/// multiples of record_bytes, which is a multiple of 8), else 8.
std::uint32_t piece_bytes(const HostTierView& view) { return view.record_bytes % 16 == 0 ? 16 : 8; }

/// Shapes: the fewest lanes (8, 16 or 32) that give each piece of a record its own lane, at most
/// 32 (wider records give each lane several). A random record of mapped host memory costs the GPU
/// about as much per request as per byte (address translation: benchmarks/zero_copy_gather.cu), so
/// fewer, wider loads serve more rows per second.
void launch_lookup_for_dim(const HostTierView& view, bool half, const TierSink& sink, float* out,
                           std::uint64_t max_misses, int sm_count, cudaStream_t stream) {
  const std::uint32_t piece = piece_bytes(view);
  const std::uint32_t pieces = (view.row_offset + 4 * view.dim + piece - 1) / piece;
  const int lanes = pieces <= 8 ? 8 : pieces <= 16 ? 16 : 32;
  if (piece == 16) {
    if (lanes == 8) return launch_lookup<8, 16>(view, half, sink, out, max_misses, sm_count, stream);
    if (lanes == 16) return launch_lookup<16, 16>(view, half, sink, out, max_misses, sm_count, stream);
    return launch_lookup<32, 16>(view, half, sink, out, max_misses, sm_count, stream);
  }
  if (lanes == 8) return launch_lookup<8, 8>(view, half, sink, out, max_misses, sm_count, stream);
  if (lanes == 16) return launch_lookup<16, 8>(view, half, sink, out, max_misses, sm_count, stream);
  return launch_lookup<32, 8>(view, half, sink, out, max_misses, sm_count, stream);
}

}  // namespace

void launch_tier_apply(const TierTable& table, TierCounters* counters, const std::int64_t* keys,
                       const std::uint64_t* records, std::size_t n, bool add, int sm_count, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = grid_blocks(n, kApplyThreads, sm_count, 8);
  if (add) {
    tier_add_kernel<<<blocks, kApplyThreads, 0, stream>>>(table, counters, keys, records, n);
  } else {
    tier_remove_kernel<<<blocks, kApplyThreads, 0, stream>>>(table, keys, records, n);
  }
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_tier_sweep(const TierTable& table, TierCounters* counters, int sm_count, cudaStream_t stream) {
  const unsigned blocks = grid_blocks(table.slots, kApplyThreads, sm_count, 8);
  tier_sweep_kernel<<<blocks, kApplyThreads, 0, stream>>>(table, counters);
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_tier_rehash(const TierTable& from, const TierTable& to, TierCounters* counters, int sm_count,
                        cudaStream_t stream) {
  const unsigned blocks = grid_blocks(from.slots, kApplyThreads, sm_count, 8);
  tier_rehash_kernel<<<blocks, kApplyThreads, 0, stream>>>(from, to, counters);
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_tier_publish(TierTable* descriptor, const TierTable& table, const TierTable** current,
                         cudaStream_t stream) {
  tier_publish_kernel<<<1, 1, 0, stream>>>(descriptor, table, current);
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_tier_lookup(const HostTierView& view, bool half, const TierSink& sink, float* out, std::uint64_t max_misses,
                        int sm_count, cudaStream_t stream) {
  if (max_misses == 0) return;
  launch_lookup_for_dim(view, half, sink, out, max_misses, sm_count, stream);
}

}  // namespace hps::cuda

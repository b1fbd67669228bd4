// Kernels of the host-tier index. Design and memory-ordering argument: docs/gpu_cache.md,
// "Misses served from the CPU-memory tier".
//
// Readers of a host record (record_hooks.hpp, reader side, at system scope): the group's first lane
// loads the header and the key, every lane its share of the row, all requested at once (one round
// trip over PCIe; loads of mapped host memory are not ordered among themselves, so nothing may
// depend on their order). The lanes add up the checksum terms of what they read
// (detail/record_checksum.hpp); the group accepts the row when the header is not busy and holds
// the checksum of the key and row read, and the key is the wanted one. A read that mixed two
// states of the record fails the check (but for about 2^-62) and is retried.
#include <cuda_fp16.h>

#include <algorithm>
#include <numeric>

#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/host_tier_kernels.hpp"
#include "detail/record_checksum.hpp"
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

__device__ __forceinline__ TierEntry load_entry(const TierEntry* entry) {
  const uint4 v = load_relaxed_v4(entry);
  return TierEntry{join_key(v.x, v.y), (static_cast<std::uint64_t>(v.w) << 32) | v.z};
}

/// The record address of `key`, or 0. An entry read torn (an adder rewriting it) can only name a
/// record whose key the reader checks; a claimed entry is skipped (its add is still in progress).
__device__ std::uint64_t find_record(const HostTierView& view, std::int64_t key) {
  std::uint64_t s = home_of(key, view.slots);
  for (std::uint64_t probes = 0; probes < view.slots; ++probes) {
    const TierEntry e = load_entry(view.entries + s);
    if (e.record == kTierEmpty) return 0;
    if (e.record >= kTierFirstAddress && e.key == key) return e.record;
    s = s + 1 == view.slots ? 0 : s + 1;
  }
  return 0;
}

__global__ void tier_add_kernel(const HostTierView view, const std::int64_t* keys, const std::uint64_t* records,
                                std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t key = keys[i];
    const std::uint64_t record = records[i];
    bool done = false;
    for (int attempt = 0; attempt < 64 && !done; ++attempt) {
      std::uint64_t s = home_of(key, view.slots);
      std::uint64_t target = ~0ull, expected = kTierEmpty, first_tombstone = ~0ull;
      bool overwritten = false;
      for (std::uint64_t probes = 0; probes < view.slots; ++probes) {
        const TierEntry e = load_entry(view.entries + s);
        if (e.record == kTierEmpty) {
          target = s;
          break;
        }
        if (e.record == kTierTombstone) {
          if (first_tombstone == ~0ull) first_tombstone = s;
        } else if (e.record >= kTierFirstAddress && e.key == key) {
          // The key is there already (its removal did not match): point it at the new record.
          atomicExch(reinterpret_cast<unsigned long long*>(&view.entries[s].record), record);
          overwritten = true;
          break;
        }
        s = s + 1 == view.slots ? 0 : s + 1;
      }
      if (overwritten) {
        done = true;
        break;
      }
      // Reuse the first tombstone of the chain (the key is in none of its entries: the scan
      // reached an empty entry, or went all round).
      if (first_tombstone != ~0ull) target = first_tombstone, expected = kTierTombstone;
      if (target == ~0ull) break;  // full
      auto* word = reinterpret_cast<unsigned long long*>(&view.entries[target].record);
      if (atomicCAS(word, expected, kTierClaimed) != expected) continue;  // another adder took it: rescan
      store_relaxed_u64(&view.entries[target].key, static_cast<std::uint64_t>(key));
      __threadfence();  // the key before the address: a reader that sees the address sees the key
      store_relaxed_u64(&view.entries[target].record, record);
      done = true;
    }
    if (!done) atomicAdd(&view.counters->failed_adds, 1ull);
  }
}

__global__ void tier_remove_kernel(const HostTierView view, const std::int64_t* keys, const std::uint64_t* records,
                                   std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t key = keys[i];
    std::uint64_t s = home_of(key, view.slots);
    for (std::uint64_t probes = 0; probes < view.slots; ++probes) {
      const TierEntry e = load_entry(view.entries + s);
      if (e.record == kTierEmpty) break;
      if (e.record >= kTierFirstAddress && e.key == key) {
        // Only the entry of that record: a later add of the key may have pointed it elsewhere.
        atomicCAS(reinterpret_cast<unsigned long long*>(&view.entries[s].record), records[i], kTierTombstone);
        break;
      }
      s = s + 1 == view.slots ? 0 : s + 1;
    }
  }
}

enum class Outcome { kFound, kAbsent, kLeft };

/// The elements of a row that one lane of a group reads and writes: pieces of kPieceBytes (one load
/// each) numbered c = rank, rank + kLanes, ...; piece c holds elements [c * kWords, c * kWords + kWords).
template <int kLanes, int kPieceBytes>
struct LaneShare {
  static constexpr int kWords = kPieceBytes / 4;
  template <typename F>
  __device__ __forceinline__ static void for_each(std::uint32_t dim, unsigned rank, F&& f) {
    for (std::uint32_t c = rank; c * kWords < dim; c += kLanes) {
#pragma unroll
      for (int w = 0; w < kWords; ++w) f(c * kWords + w);
    }
  }
};

/// kLanes lanes read one row, each its LaneShare. Groups of a warp run different numbers of
/// iterations, so every shuffle and ballot names the group's lanes only.
template <int kLanes, int kPieceBytes>
__global__ void __launch_bounds__(kLookupThreads) tier_lookup_kernel(const HostTierView view, const bool half,
                                                                     const TierSink sink, float* out) {
  using Share = LaneShare<kLanes, kPieceBytes>;
  const unsigned lane = threadIdx.x % 32;
  const unsigned rank = lane % kLanes;
  const int group_base = static_cast<int>(lane - rank);
  const std::uint32_t group_mask = kLanes == 32 ? 0xFFFFFFFFu : ((1u << kLanes) - 1u) << group_base;
  const std::uint64_t group = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) / kLanes;
  const std::uint64_t groups = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / kLanes;
  const unsigned long long misses = sink.status->miss_count;  // the probe, earlier on this stream, is complete
  const std::uint32_t dim = view.dim;
  const int attempts = sink.absent_is_default ? kPatientAttempts : kAttempts;

  for (std::uint64_t i = group; i < misses; i += groups) {
    const std::int64_t key = sink.miss_keys[i];
    const std::uint32_t pos = sink.miss_positions[i];
    float* dst = out + static_cast<std::uint64_t>(pos) * dim;
    Outcome outcome = Outcome::kLeft;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      // The group's first lane probes; all lanes then read the same record (group-uniform).
      std::uint64_t record = 0;
      if (rank == 0) record = find_record(view, key);
      record = __shfl_sync(group_mask, record, group_base);
      if (record == 0) {
        outcome = Outcome::kAbsent;
        break;
      }
      const char* rec = reinterpret_cast<const char*>(record);
      // One round trip: the first lane's header and key, every lane's pieces, all in flight at once.
      std::uint64_t header = 0;
      std::int64_t seen_key = 0;
      if (rank == 0) {
        header = load_relaxed_sys_u64(rec);
        seen_key = static_cast<std::int64_t>(load_relaxed_sys_u64(rec + view.key_offset));
      }
      const char* row = rec + view.row_offset;
      std::uint64_t sum = 0;
      // Writes a piece to the output (overwritten by a retry, the default or the host path unless the
      // row is accepted) and adds its words' checksum terms.
      const auto take = [&](const SysPiece<kPieceBytes>& piece, std::uint32_t c) {
#pragma unroll
        for (int w = 0; w < Share::kWords; ++w) {
          sum += record_checksum::term(c * Share::kWords + w, piece.w[w]);
          float v = __uint_as_float(piece.w[w]);
          if (half) v = round_to_half(v);
          dst[c * Share::kWords + w] = v;
        }
      };
      // Two of a lane's pieces in flight before either is used (rows wider than a group's loads).
      const std::uint32_t pieces = dim / Share::kWords;
      for (std::uint32_t c = rank; c < pieces; c += 2 * kLanes) {
        const bool second = c + kLanes < pieces;
        const auto a = load_relaxed_sys_piece<kPieceBytes>(row + static_cast<std::size_t>(c) * kPieceBytes);
        SysPiece<kPieceBytes> b{};
        if (second) b = load_relaxed_sys_piece<kPieceBytes>(row + static_cast<std::size_t>(c + kLanes) * kPieceBytes);
        take(a, c);
        if (second) take(b, c + kLanes);
      }
      if (rank == 0) sum += record_checksum::key_terms(seen_key);
#pragma unroll
      for (int offset = 1; offset < kLanes; offset *= 2) sum += __shfl_xor_sync(group_mask, sum, offset);
      header = __shfl_sync(group_mask, header, group_base);
      seen_key = __shfl_sync(group_mask, seen_key, group_base);
      const bool whole = (header & kRecordBusy) == 0 &&
                         record_checksum::header_bits(sum) == (header & ~record_checksum::kFlagBits);
      if (whole && (header & kRecordLive) != 0 && seen_key == key) {
        outcome = Outcome::kFound;
        break;
      }
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
      Share::for_each(dim, rank, [&](std::uint32_t e) { dst[e] = v; });
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
        Share::for_each(dim, rank, [&](std::uint32_t e) { staged[e] = dst[e]; });  // this lane's own writes
      }
    }
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

/// Bytes per load of a row: the widest of 16 and 8 that every row's address is aligned to (records
/// start at page starts plus multiples of record_bytes) and that still gives each lane of a warp
/// at least one load; 4 otherwise.
std::uint32_t piece_bytes(const HostTierView& view) {
  const std::uint32_t row_bytes = 4 * view.dim;
  const std::uint32_t aligned = std::gcd(view.record_bytes, view.row_offset);
  for (std::uint32_t piece : {16u, 8u}) {
    if (aligned % piece == 0 && row_bytes % piece == 0 && row_bytes >= 32 * piece) return piece;
  }
  return 4;
}

/// Shapes: up to 16 elements, a group of 8 or 16 lanes with one element each; wider rows, a warp
/// per row, each lane reading its share with as few loads as the alignment allows. A random row of
/// mapped host memory costs the GPU about as much per request as per byte (address translation:
/// benchmarks/zero_copy_gather.cu), so fewer, wider loads serve more rows per second.
void launch_lookup_for_dim(const HostTierView& view, bool half, const TierSink& sink, float* out,
                           std::uint64_t max_misses, int sm_count, cudaStream_t stream) {
  if (view.dim <= 8) return launch_lookup<8, 4>(view, half, sink, out, max_misses, sm_count, stream);
  if (view.dim <= 16) return launch_lookup<16, 4>(view, half, sink, out, max_misses, sm_count, stream);
  switch (piece_bytes(view)) {
    case 16: return launch_lookup<32, 16>(view, half, sink, out, max_misses, sm_count, stream);
    case 8: return launch_lookup<32, 8>(view, half, sink, out, max_misses, sm_count, stream);
    default: return launch_lookup<32, 4>(view, half, sink, out, max_misses, sm_count, stream);
  }
}

}  // namespace

void launch_tier_apply(const HostTierView& view, const std::int64_t* keys, const std::uint64_t* records, std::size_t n,
                       bool add, int sm_count, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = grid_blocks(n, kApplyThreads, sm_count, 8);
  if (add) {
    tier_add_kernel<<<blocks, kApplyThreads, 0, stream>>>(view, keys, records, n);
  } else {
    tier_remove_kernel<<<blocks, kApplyThreads, 0, stream>>>(view, keys, records, n);
  }
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_tier_lookup(const HostTierView& view, bool half, const TierSink& sink, float* out, std::uint64_t max_misses,
                        int sm_count, cudaStream_t stream) {
  if (max_misses == 0) return;
  launch_lookup_for_dim(view, half, sink, out, max_misses, sm_count, stream);
}

}  // namespace hps::cuda

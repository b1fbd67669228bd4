// Lookup kernel of the dynamic cache (readers; no locks).
//
// A group of kLanes lanes serves a key, each lane holding up to kChunks 16-byte chunks of the row in
// registers (few lanes per key: the per-key state is copied in fewer lanes, so more keys fit in
// flight; the lookup is bound by chains of dependent memory reads). Each group keeps kKeys keys in
// flight and every phase issues its loads for all of them before using any result:
//  A. load and convert the keys; hash each to its two candidate sets, a 16-bit digest and the
//     48 hash bits a slot's tag holds;
//  B. load both sets' 8 meta words (two 32-byte sectors, split over the group's lanes and issued
//     together, so the second set costs no extra round trip);
//  C. candidates = slots of either set whose digest matches and that are occupied and not busy;
//     the first candidate's meta word is the version "before";
//  D. load the candidate's tag (hash bits and LRU stamp) and row chunk into registers;
//  E. re-read the candidate's meta word ("after"), strictly after the tag and row reads;
//  F. a hit when the tag holds the key's hash and before == after (no writer touched the slot while
//     it was read): the row is written to the output. Otherwise a miss, answered by the host
//     tiers through the miss path.
// Read ordering (docs/gpu_cache.md): the tag and row addresses depend on the meta words
// loaded in B, and the address of the "after" read depends, through a zero the kernel cannot see
// to be zero, on the tag and row data: a load is only issued once the values its address
// depends on have arrived, so the reads happen in protocol order without a fence. With
// kStrict the kernel uses fences instead (the PTX memory model's own tool; benchmarked slower).
// Rows wider than kLanes x kChunks chunks read the rest with fences in either mode.
// A hit refreshes the slot's LRU stamp when it is older than this lookup (so rows a lookup hits
// are never older than the misses it inserts; a hot key's repeats in one call mostly see the
// first store and skip theirs), while the cache fills or evicts; a full cache that has not evicted
// for a while keeps coarser recency and so spares most stamp writes (stamp_needs_refresh).
// Misses are appended, warp-aggregated, to the sink's compacted key/position lists.
#include <cuda_fp16.h>

#include <type_traits>

#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/dynamic_probe_kernels.hpp"
#include "gpu/key_conversion.cuh"
#include "gpu/probe_dispatch.cuh"

namespace hps::cuda {
namespace {

constexpr int kBlockThreads = 256;
/// Shapes holding 8 or more row chunks per key ask for at least 4 resident blocks (1,024 threads)
/// per SM, which caps registers at 64; left alone the compiler takes ~76 and fits only 3. Smaller
/// fp32 shapes ask for 5 (48 registers, no spills): with both candidate sets' meta words in
/// flight they would otherwise take 64 and fit only 4. Smaller fp16 shapes ask nothing (their
/// conversions spill under 48). The lookup is bound by chains of dependent reads, so keys in
/// flight matter most.
template <typename T, int kLanes, int kChunks>
constexpr int kMinBlocksPerSm = std::min(kLanes * kChunks >= 8 ? 4 : (std::is_same_v<T, float> ? 5 : 0),
                                         kMaxBlocksOf256PerSm);
constexpr std::uint32_t kFullMask = 0xFFFFFFFFu;
/// A hit rewrites its slot's stamp only when it is at least this many lookups old. 1: whenever
/// the stamp is older than the lookup. (4 was measured to cost up to 16 points of hit rate when a
/// call's misses outnumber a few percent of the cache: the call's own insertions, stamped with its
/// epoch, evicted the hot rows it had just hit without refreshing. docs/gpu_cache.md.)
constexpr std::uint32_t kStampRefreshAge = 1;
/// Recency only decides which key an insertion evicts. While the cache is not full, and within
/// this many lookups of the latest eviction, hits keep it exact (kStampRefreshAge); a full cache
/// that has not had to evict for that long (one that holds every key it is given) rewrites a
/// hit's stamp only once it is kQuietRefreshAge lookups old. Why: each stamp write costs its tag
/// sector's 32-byte write-back to DRAM, 4-9 points of the HBM bound in all-hit lookups
/// (docs/gpu_cache.md). In a quiet cache stamps stay within 2,048 lookups of the clock, far from
/// the 16-bit stamp's wrap, so the first evictions after a quiet spell still choose among the
/// candidates by recency, at that coarser grain. (A host model, benchmarks/recency_model.cpp: in a
/// Zipf spell, 2,048 writes 4% of exact recency's stamps and costs 0.09 points of hit rate over the
/// 400 calls after it; 8,192 wrote 1% and cost 0.58.)
constexpr std::uint32_t kRecencyWindow = 1u << 14;
constexpr std::uint32_t kQuietRefreshAge = 1u << 11;

/// Whether lookups at `epoch` keep exact recency: the cache is still filling (its first evictions
/// must find the recency of the keys it holds), or it evicted within kRecencyWindow lookups.
/// Read once per thread; a slightly old value is fine.
__device__ __forceinline__ bool exact_recency(const DynamicTableView& table, std::uint32_t epoch) {
  const std::uint64_t last = load_relaxed_u64(&table.counters->last_eviction);
  if (last != 0 && epoch - static_cast<std::uint32_t>(last) < kRecencyWindow) return true;
  return load_relaxed_u64(&table.counters->occupied) < table.capacity;
}

/// Whether a hit should rewrite the slot's stamp (a stamp newer than `epoch`, from a later
/// lookup, is left alone).
__device__ __forceinline__ bool stamp_needs_refresh(std::uint32_t epoch, std::uint16_t stamp, bool exact) {
  return stamp_age(epoch, stamp) >= (exact ? kStampRefreshAge : kQuietRefreshAge);
}

__device__ __forceinline__ bool is_candidate(std::uint32_t meta, std::uint32_t digest) {
  return (meta >> 16) == digest && (meta & (kMetaBusy | kMetaOccupied)) == kMetaOccupied;
}

/// Global slot index of candidate `c` (0-7: slot c of `first`, 8-15: slot c - 8 of `second`).
__device__ __forceinline__ std::uint64_t candidate_slot(std::uint32_t first, std::uint32_t second, int c) {
  return static_cast<std::uint64_t>(c < kSlotsPerSet ? first : second) * kSlotsPerSet +
         static_cast<std::uint64_t>(c % kSlotsPerSet);
}

/// The 16 candidate meta words of a key (8 of each set) held by one lane: kWords consecutive
/// words of the concatenation [first set's 8 | second set's 8]. Loaded with L2's evict_last
/// priority: every probe reads them, rows stream past them.
template <int kWords>
struct MetaWords {
  std::uint32_t w[kWords];
  /// Loads this lane's words, the `rank`-th group of kWords.
  __device__ __forceinline__ void load(const std::uint32_t* meta, std::uint32_t first, std::uint32_t second,
                                       unsigned rank) {
    const std::uint64_t policy = l2_evict_last_policy();
    if constexpr (kWords == 16) {
      const std::uint32_t* a = meta + static_cast<std::uint64_t>(first) * kSlotsPerSet;
      const std::uint32_t* b = meta + static_cast<std::uint64_t>(second) * kSlotsPerSet;
      const uint4 v0 = load_relaxed_v4_l2_keep(a, policy), v1 = load_relaxed_v4_l2_keep(a + 4, policy);
      const uint4 v2 = load_relaxed_v4_l2_keep(b, policy), v3 = load_relaxed_v4_l2_keep(b + 4, policy);
      w[0] = v0.x, w[1] = v0.y, w[2] = v0.z, w[3] = v0.w, w[4] = v1.x, w[5] = v1.y, w[6] = v1.z, w[7] = v1.w;
      w[8] = v2.x, w[9] = v2.y, w[10] = v2.z, w[11] = v2.w, w[12] = v3.x, w[13] = v3.y, w[14] = v3.z, w[15] = v3.w;
    } else {
      const unsigned word = rank * kWords;  // first word of this lane in the concatenation
      const std::uint32_t set = word < static_cast<unsigned>(kSlotsPerSet) ? first : second;
      const std::uint32_t* at = meta + static_cast<std::uint64_t>(set) * kSlotsPerSet + word % kSlotsPerSet;
      if constexpr (kWords == 8) {
        const uint4 a = load_relaxed_v4_l2_keep(at, policy), b = load_relaxed_v4_l2_keep(at + 4, policy);
        w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
      } else if constexpr (kWords == 4) {
        const uint4 v = load_relaxed_v4_l2_keep(at, policy);
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
      } else {
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[i] = load_relaxed_u32_l2_keep(at + i, policy);
      }
    }
  }
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] = 0;
  }
  __device__ __forceinline__ std::uint32_t pick(int i) const {
    std::uint32_t v = w[0];
#pragma unroll
    for (int j = 1; j < kWords; ++j) v = i == j ? w[j] : v;
    return v;
  }
};

/// Appends the positions whose `miss` is set to the sink, one atomic per warp.
/// Every lane of the warp calls it (warp-uniform control flow).
__device__ __forceinline__ void append_misses(const MissSink& sink, bool miss, std::int64_t key, std::uint32_t pos,
                                              unsigned lane) {
  const std::uint32_t votes = __ballot_sync(kFullMask, miss);
  if (votes == 0) return;
  const int leader = __ffs(static_cast<int>(votes)) - 1;
  unsigned long long base = 0;
  if (static_cast<int>(lane) == leader) base = atomicAdd(&sink.status->miss_count, static_cast<unsigned long long>(__popc(votes)));
  base = __shfl_sync(kFullMask, base, leader);
  if (miss) {
    const unsigned long long at = base + static_cast<unsigned long long>(__popc(votes & lanes_below(lane)));
    sink.keys[at] = key;
    sink.positions[at] = pos;
    if (sink.eager_keys != nullptr && at < kEagerMissKeys) sink.eager_keys[at] = key;
  }
}

/// Slow path (rare): the first candidate's slot held another key (a 16-bit digest collision),
/// so the group tries the remaining candidates one by one with the full protocol and fences,
/// re-reading each candidate's meta word as its version "before".
template <typename T, bool kVector, int kLanes>
__device__ bool probe_remaining_candidates(const DynamicTableView& table, std::uint64_t hash, std::uint32_t first,
                                           std::uint32_t second, std::uint32_t candidates, float* dst, unsigned rank,
                                           std::uint32_t group_mask, std::uint32_t epoch, bool exact) {
  using Chunk = RowChunk<T, kVector>;
  const std::uint32_t chunks = table.dim / Chunk::kElems;
  const T* rows = static_cast<const T*>(table.rows);
  while (candidates != 0) {
    const int j = __ffs(static_cast<int>(candidates)) - 1;
    candidates &= candidates - 1;
    const std::uint64_t slot = candidate_slot(first, second, j);
    const std::uint32_t before = load_relaxed_u32(table.meta + slot);
    fence_gpu();
    const std::uint64_t tag = load_relaxed_u64(table.tags + slot);
    // Group-uniform decision, so every lane takes the same path.
    const bool usable = (before & (kMetaBusy | kMetaOccupied)) == kMetaOccupied && tag_matches(tag, hash);
    if ((__ballot_sync(group_mask, usable) & group_mask) != group_mask) continue;
    const T* row = rows + slot * table.dim;
    for (std::uint32_t c = rank; c < chunks; c += kLanes) {
      float v[Chunk::kElems];
      Chunk::load_relaxed(row, c, v);
      store_output<Chunk::kElems>(dst, c, v);  // a miss is overwritten later by the miss path
    }
    fence_gpu();
    const bool unchanged = load_relaxed_u32(table.meta + slot) == before;
    const bool hit = (__ballot_sync(group_mask, unchanged) & group_mask) == group_mask;
    if (hit && rank == 0 && stamp_needs_refresh(epoch, tag_stamp(tag), exact)) {
      store_relaxed_u16(stamp_address(table.tags + slot), lru_stamp(epoch));
    }
    return hit;  // a key occupies one slot (two only during a move, both whole: either answers)
  }
  return false;
}

template <typename T, bool kVector, int kLanes, int kChunks, int kKeys, bool kStrict>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSm<T, kLanes, kChunks>)
    dynamic_probe_kernel(const DynamicTableView table, const KeyInput input, const std::uint64_t n, float* out,
                         const std::uint32_t epoch, const MissSink sink, const std::uint32_t zero) {
  using Chunk = RowChunk<T, kVector>;
  constexpr int kGroupsPerWarp = 32 / kLanes;
  constexpr int kKeysPerWarp = kGroupsPerWarp * kKeys;
  // The group's lanes split the 16 candidate meta words (both sets): kWords each, over kMetaLanes lanes.
  constexpr int kWords = kLanes >= kCandidateSlots ? 1 : kCandidateSlots / kLanes;
  constexpr int kMetaLanes = kCandidateSlots / kWords;
  const unsigned lane = threadIdx.x % 32;
  const unsigned group = lane / kLanes;
  const unsigned rank = lane % kLanes;
  const int group_base = static_cast<int>(group * kLanes);
  const std::uint32_t group_mask = kLanes == 32 ? kFullMask : ((1u << kLanes) - 1u) << (group * kLanes);

  if (blockIdx.x == 0 && threadIdx.x == 0) *sink.next = LookupStatus{0, kNoInvalidKey};
  const bool exact = exact_recency(table, epoch);

  const std::uint32_t dim = table.dim;
  const std::uint32_t chunks = dim / Chunk::kElems;
  // Rows with more chunks than the group holds in registers: the rest is read in a loop.
  const bool wide_rows = chunks > static_cast<std::uint32_t>(kLanes * kChunks);
  const T* rows = static_cast<const T*>(table.rows);
  const std::uint64_t warp = (static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const std::uint64_t warps = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / 32;

  // The loop bound is uniform across the warp, so warp-wide shuffles and ballots inside are safe.
  // Positions and sets fit 32 bits (checked when the cache and the call are created).
  const std::uint64_t stride = warps * kKeysPerWarp;
  std::uint32_t pos[kKeys];
  std::uint64_t raw[kKeys];
  key_positions<kKeys, kGroupsPerWarp>(warp * kKeysPerWarp, group, n, pos);
  load_raw_keys(input, pos, raw);
  for (std::uint64_t base = warp * kKeysPerWarp; base < n; base += stride) {
    std::uint64_t hash[kKeys];    // murmur3_fmix64 of the canonical key (bijective: the key is its inverse)
    std::uint32_t set[kKeys];     // first candidate set
    std::uint32_t other[kKeys];   // second candidate set
    std::uint32_t digest[kKeys];

    // A. This iteration's keys arrived during the last one; fetch the next iteration's now, so
    // their latency overlaps this iteration's chain of reads.
    std::uint32_t next_pos[kKeys];
    std::uint64_t next_raw[kKeys];
    key_positions<kKeys, kGroupsPerWarp>(base + stride, group, n, next_pos);
    load_raw_keys(input, next_pos, next_raw);
    // B. Meta words of each key's two sets, both sectors requested together.
    MetaWords<kWords> meta[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      hash[k] = 0;
      set[k] = 0;
      other[k] = 0;
      digest[k] = 0;
      meta[k].clear();
      if (pos[k] == kDeadPosition) continue;
      std::int64_t key = 0;
      if (!canonical_from_raw(input, raw[k], key)) {
        if (rank == 0) atomicMin(&sink.status->first_invalid, static_cast<unsigned long long>(pos[k]));
        pos[k] = kDeadPosition;
        continue;
      }
      hash[k] = murmur3_fmix64(key);
      candidate_sets(hash[k], table.num_sets, set[k], other[k]);
      digest[k] = static_cast<std::uint32_t>(hash[k] & 0xFFFFu);
      if (rank < static_cast<unsigned>(kMetaLanes)) meta[k].load(table.meta, set[k], other[k], rank);
    }
    if constexpr (kStrict) fence_gpu();

    // C. Candidates and the version "before".
    std::uint32_t candidates[kKeys];
    std::uint32_t before[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      std::uint32_t bits = 0;
      if (rank < static_cast<unsigned>(kMetaLanes)) {
#pragma unroll
        for (int w = 0; w < kWords; ++w) {
          if (pos[k] != kDeadPosition && is_candidate(meta[k].w[w], digest[k])) bits |= 1u << (rank * kWords + w);
        }
      }
#pragma unroll
      for (int offset = 1; offset < kMetaLanes; offset *= 2) bits |= __shfl_xor_sync(kFullMask, bits, offset);
      if constexpr (kLanes > kMetaLanes) bits = __shfl_sync(kFullMask, bits, group_base);
      candidates[k] = bits;
      const int first = bits != 0 ? __ffs(static_cast<int>(bits)) - 1 : 0;
      if constexpr (kMetaLanes == 1) {
        before[k] = meta[k].pick(first);
      } else {
        before[k] = __shfl_sync(kFullMask, meta[k].pick(first % kWords), group_base + first / kWords);
      }
    }

    // D. Tag and row chunks of each key's first candidate, into registers.
    std::uint64_t tag[kKeys];
    typename Chunk::Bits data[kKeys][kChunks];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      tag[k] = 0;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) data[k][j] = typename Chunk::Bits{};
      if (candidates[k] == 0) continue;
      const std::uint64_t slot = candidate_slot(set[k], other[k], __ffs(static_cast<int>(candidates[k])) - 1);
      tag[k] = load_relaxed_u64(table.tags + slot);
      const T* row = rows + slot * dim;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) {
        const std::uint32_t c = rank + static_cast<std::uint32_t>(j * kLanes);
        if (c < chunks) data[k][j] = Chunk::load_bits(row, c);
      }
    }
    if (wide_rows) {
      // The other chunks go to the output right away (a miss is overwritten by the miss path).
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        if (candidates[k] == 0) continue;
        const std::uint64_t slot = candidate_slot(set[k], other[k], __ffs(static_cast<int>(candidates[k])) - 1);
        float* dst = out + static_cast<std::uint64_t>(pos[k]) * dim;
        for (std::uint32_t c = rank + kLanes * kChunks; c < chunks; c += kLanes) {
          const typename Chunk::Bits extra = Chunk::load_bits(rows + slot * dim, c);
          if (tag_matches(tag[k], hash[k])) Chunk::to_output(dst, c, extra);
        }
      }
    }

    // E. The version "after", read once the tag and row reads are complete.
    if (kStrict || wide_rows) fence_gpu();
    bool hit[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      hit[k] = false;
      if (candidates[k] == 0) continue;
      const std::uint64_t slot = candidate_slot(set[k], other[k], __ffs(static_cast<int>(candidates[k])) - 1);
      // Zero at run time, but computed from every value just read: the load below waits for them.
      std::uint32_t after_dependency = static_cast<std::uint32_t>(tag[k] ^ (tag[k] >> 32));
#pragma unroll
      for (int j = 0; j < kChunks; ++j) after_dependency ^= Chunk::first_word(data[k][j]);
      after_dependency &= zero;
      const std::uint32_t after = load_relaxed_u32(table.meta + slot + after_dependency);
      hit[k] = after == before[k] && tag_matches(tag[k], hash[k]);
    }

    // F. Decide (the whole group agrees), write hits, resolve collisions, report misses.
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      const bool group_hit = (__ballot_sync(kFullMask, hit[k]) & group_mask) == group_mask;
      const bool collided = !group_hit && candidates[k] != 0 && !tag_matches(tag[k], hash[k]) &&
                            (candidates[k] & (candidates[k] - 1u)) != 0;
      const bool slow = (__ballot_sync(kFullMask, collided) & group_mask) != 0;
      bool found = group_hit;
      float* dst = out + static_cast<std::uint64_t>(pos[k]) * dim;
      if (group_hit) {
#pragma unroll
        for (int j = 0; j < kChunks; ++j) {
          const std::uint32_t c = rank + static_cast<std::uint32_t>(j * kLanes);
          if (c < chunks) Chunk::to_output(dst, c, data[k][j]);
        }
        if (rank == 0 && stamp_needs_refresh(epoch, tag_stamp(tag[k]), exact)) {
          const std::uint64_t slot = candidate_slot(set[k], other[k], __ffs(static_cast<int>(candidates[k])) - 1);
          store_relaxed_u16(stamp_address(table.tags + slot), lru_stamp(epoch));
        }
      } else if (slow) {
        found = probe_remaining_candidates<T, kVector, kLanes>(table, hash[k], set[k], other[k],
                                                               candidates[k] & (candidates[k] - 1u), dst, rank,
                                                               group_mask, epoch, exact);
      }
      append_misses(sink, pos[k] != kDeadPosition && !found && rank == 0, murmur3_fmix64_inverse(hash[k]), pos[k],
                    lane);
    }
#pragma unroll
    for (int k = 0; k < kKeys; ++k) pos[k] = next_pos[k], raw[k] = next_raw[k];
  }
}

template <typename T, bool kVector, int kLanes, int kChunks, int kKeys, bool kStrict>
struct DynamicProbeLauncher {
  static void launch(const DynamicTableView& table, const KeyInput& input, std::uint64_t n, float* out,
                     std::uint32_t epoch, const MissSink& sink, int sm_count, cudaStream_t stream) {
    constexpr std::uint64_t kKeysPerBlock = kBlockThreads / kLanes * kKeys;
    // One wave of resident blocks: a partial second wave would leave SMs idle at the end.
    static const int per_sm = resident_blocks_per_sm(dynamic_probe_kernel<T, kVector, kLanes, kChunks, kKeys, kStrict>, kBlockThreads);
    const unsigned blocks = grid_blocks(n, kKeysPerBlock, sm_count, per_sm);
    dynamic_probe_kernel<T, kVector, kLanes, kChunks, kKeys, kStrict>
        <<<blocks, kBlockThreads, 0, stream>>>(table, input, n, out, epoch, sink, 0u);
    HPS_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace

void launch_dynamic_probe(const DynamicTableView& table, bool half, const KeyInput& input, std::uint64_t n, float* out,
                          std::uint32_t epoch, const MissSink& sink, ProbeShape shape, int sm_count,
                          cudaStream_t stream) {
  if (n == 0) return;
  const ResolvedShape resolved = resolve_dynamic_probe_shape(table.dim, half ? 2 : 4, out, shape);
  dispatch_probe_shape<DynamicProbeLauncher>(half, resolved, table, input, n, out, epoch, sink, sm_count, stream);
}

}  // namespace hps::cuda

// Lookup kernel of the static cache (readers; no locks, no host round trip).
//
// A group of kLanes lanes serves a key, each lane holding up to kChunks 16-byte row chunks in
// registers (few lanes per key leave registers for more keys in flight); each group keeps kKeys
// keys in flight and every phase issues its loads for all of them before using any result:
//  A. load and convert the keys; hash each to its home bucket (2 entries, one 32-byte sector);
//  B. load the bucket's two entries {key, row id, seq} (lanes 0 and 1, or lane 0 alone);
//  C. the entry holding the key gives the row id and the version "before" (seq); an empty entry
//     first proves the key absent; a full bucket without the key sends the key to the next
//     bucket (one more batched round), then to the slow path;
//  D. load the row chunk into registers; E. re-read seq ("after");
//  F. before == after: the row is whole (old or new, never a mix) and goes to the output; the
//     default row goes to absent keys; a changed seq (an update rewrote the row in place, or an
//     erase freed it) sends the key to the slow path, which retries until it reads a whole row.
// Defaults served are counted per warp in shared memory (a slot per warp; a loop-carried register
// made the fp32 shapes spill at their 48-register cap) and added to a device counter once per warp
// at the end (one global atomic per warp that served any; no host synchronisation).
// Read ordering as in the dynamic kernel (docs/gpu_cache.md): the row address depends on the
// entry just read, and the address of the "after" read depends on the row data through a zero the
// kernel cannot see to be zero. kStrict uses fences instead. Rows wider than kLanes x kChunks
// chunks read the rest with a fence.
#include <cuda_fp16.h>

#include <type_traits>

#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/key_conversion.cuh"
#include "gpu/probe_dispatch.cuh"
#include "gpu/static_lookup_kernels.hpp"

namespace hps::cuda {
namespace {

constexpr int kBlockThreads = 256;
/// Resident blocks per SM asked of the compiler: 5 (48 registers) for fp32 rows, which fit without
/// spilling; 4 (64 registers) for fp16 rows, whose conversions need more. The lookup is bound by
/// chains of dependent reads, so keys in flight matter most.
template <typename T>
constexpr int kMinBlocksPerSm = std::min(std::is_same_v<T, float> ? 5 : 4, kMaxBlocksOf256PerSm);
constexpr std::uint32_t kFullMask = 0xFFFFFFFFu;

__device__ __forceinline__ std::uint32_t entry_state(std::uint32_t seq) { return (seq >> 1) & 3u; }

/// Default rows written by each warp of a block (the lookup kernel's; shared atomics: group
/// leaders of the slow path add to it too). At file scope, so the slow path needs no pointer.
__shared__ unsigned int warp_defaults[kBlockThreads / 32];

__device__ __forceinline__ void count_defaults(unsigned int n) { atomicAdd(&warp_defaults[threadIdx.x / 32], n); }

template <int kElems>
__device__ __forceinline__ void write_default(float* dst, std::uint32_t chunks, unsigned rank, int lanes, float value) {
  float v[kElems];
#pragma unroll
  for (int q = 0; q < kElems; ++q) v[q] = value;
  for (std::uint32_t c = rank; c < chunks; c += static_cast<std::uint32_t>(lanes)) store_output<kElems>(dst, c, v);
}

/// Slow path: probes from `bucket` until the key or an empty entry is found, retrying an entry
/// whose row changed while it was copied. The group leader loads each entry and broadcasts it,
/// so the whole group always takes the same branch. A default row written is counted.
template <typename T, bool kVector, int kLanes>
__device__ void static_probe_slow(const StaticTableView table, std::int64_t key, std::uint64_t bucket,
                                  float* dst, unsigned rank, int leader, std::uint32_t group_mask,
                                  float default_value) {
  using Chunk = RowChunk<T, kVector>;
  const std::uint32_t chunks = table.dim / Chunk::kElems;
  const T* rows = static_cast<const T*>(table.rows);
  for (std::uint64_t probed = 0; probed < table.num_buckets; ++probed) {
    for (int e = 0; e < kEntriesPerBucket; ++e) {
      const std::uint64_t index = bucket * kEntriesPerBucket + static_cast<std::uint64_t>(e);
      for (;;) {
        uint4 v = rank == 0 ? load_relaxed_v4(table.entries + index) : make_uint4(0, 0, 0, 0);
        v.x = __shfl_sync(group_mask, v.x, leader);
        v.y = __shfl_sync(group_mask, v.y, leader);
        v.z = __shfl_sync(group_mask, v.z, leader);
        v.w = __shfl_sync(group_mask, v.w, leader);
        const std::uint32_t seq = v.w;
        const std::uint32_t state = entry_state(seq);
        if (state == kStateEmpty && (seq & kSeqBusy) == 0) {
          write_default<Chunk::kElems>(dst, chunks, rank, kLanes, default_value);
          if (rank == 0) count_defaults(1u);
          return;
        }
        if (state != kStateOccupied || join_key(v.x, v.y) != key) break;  // next entry
        if ((seq & kSeqBusy) != 0) {
          __nanosleep(32);  // a writer is rewriting this row: wait for it
          continue;
        }
        const T* row = rows + static_cast<std::uint64_t>(v.z) * table.dim;
        for (std::uint32_t c = rank; c < chunks; c += kLanes) {
          float r[Chunk::kElems];
          Chunk::load_relaxed(row, c, r);
          store_output<Chunk::kElems>(dst, c, r);
        }
        fence_gpu();
        std::uint32_t after = rank == 0 ? load_relaxed_u32(&table.entries[index].seq) : 0u;
        after = __shfl_sync(group_mask, after, leader);
        if (after == seq) return;
        // Changed while we copied: read the entry again (it may now be erased).
      }
    }
    bucket = bucket + 1 == table.num_buckets ? 0 : bucket + 1;
  }
  write_default<Chunk::kElems>(dst, chunks, rank, kLanes, default_value);  // no empty entry anywhere
  if (rank == 0) count_defaults(1u);
}

/// Outcome of looking at one bucket for one key, the same in every lane of the group.
enum BucketOutcome : int { kFound = 0, kAbsent = 1, kNextBucket = 2, kBusy = 3 };

/// The two entries of a bucket as one group holds them: with one lane per key that lane holds
/// both; otherwise lanes 0 and 1 hold one each.
template <int kLanes>
struct BucketEntries {
  static constexpr int kPerLane = kLanes == 1 ? 2 : 1;
  uint4 e[kPerLane];
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) e[i] = make_uint4(0, 0, 0, 0);
  }
  __device__ __forceinline__ void load(const IndexEntry* bucket, unsigned rank) {
    if constexpr (kLanes == 1) {
      e[0] = load_relaxed_v4(bucket);
      e[1] = load_relaxed_v4(bucket + 1);
    } else if (rank < 2) {
      e[0] = load_relaxed_v4(bucket + rank);
    }
  }
  /// Decides for `key`; for kFound, row_id/before/index describe the entry (every lane).
  __device__ __forceinline__ BucketOutcome decide(std::int64_t key, unsigned rank, int group_base, std::uint32_t& row_id,
                                                  std::uint32_t& before, int& index) const {
    std::uint32_t matches = 0, empties = 0;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int which = kLanes == 1 ? i : static_cast<int>(rank);
      const bool holds = kLanes == 1 || rank < 2;
      const std::uint32_t state = entry_state(e[i].w);
      if (holds && state == kStateOccupied && join_key(e[i].x, e[i].y) == key) matches |= 1u << which;
      if (holds && state == kStateEmpty && (e[i].w & kSeqBusy) == 0) empties |= 1u << which;
    }
    if constexpr (kLanes > 1) {
      matches |= __shfl_xor_sync(kFullMask, matches, 1);
      empties |= __shfl_xor_sync(kFullMask, empties, 1);
      matches = __shfl_sync(kFullMask, matches, group_base);
      empties = __shfl_sync(kFullMask, empties, group_base);
    }
    // Entries are probed in order: the first that holds the key or is empty decides.
    int decided = -1;
    bool absent = false;
    if (matches & 1u) {
      decided = 0;
    } else if (empties & 1u) {
      absent = true;
    } else if (matches & 2u) {
      decided = 1;
    } else if (empties & 2u) {
      absent = true;
    }
    index = decided < 0 ? 0 : decided;
    if constexpr (kLanes == 1) {
      row_id = index == 0 ? e[0].z : e[kPerLane - 1].z;
      before = index == 0 ? e[0].w : e[kPerLane - 1].w;
    } else {
      row_id = __shfl_sync(kFullMask, e[0].z, group_base + index);
      before = __shfl_sync(kFullMask, e[0].w, group_base + index);
    }
    if (absent) return kAbsent;
    if (decided < 0) return kNextBucket;
    return (before & kSeqBusy) != 0 ? kBusy : kFound;
  }
};

template <typename T, bool kVector, int kLanes, int kChunks, int kKeys, bool kStrict>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSm<T>)
    static_lookup_kernel(const StaticTableView table, const KeyInput input, const std::uint64_t n, float* out,
                         const float default_value, LookupStatus* status, LookupStatus* next,
                         unsigned long long* defaults_served, const std::uint32_t zero) {
  using Chunk = RowChunk<T, kVector>;
  constexpr int kGroupsPerWarp = 32 / kLanes;
  constexpr int kKeysPerWarp = kGroupsPerWarp * kKeys;
  const unsigned lane = threadIdx.x % 32;
  const unsigned group = lane / kLanes;
  const unsigned rank = lane % kLanes;
  const int group_base = static_cast<int>(group * kLanes);
  const std::uint32_t group_mask = kLanes == 32 ? kFullMask : ((1u << kLanes) - 1u) << (group * kLanes);

  if (next != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *next = LookupStatus{0, kNoInvalidKey};

  const std::uint32_t dim = table.dim;
  const std::uint32_t chunks = dim / Chunk::kElems;
  const bool wide_rows = chunks > static_cast<std::uint32_t>(kLanes * kChunks);
  const T* rows = static_cast<const T*>(table.rows);
  const std::uint64_t warp = (static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const std::uint64_t warps = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / 32;

  // Warp-uniform loop; positions and buckets fit 32 bits (checked at creation and per call).
  const std::uint64_t stride = warps * kKeysPerWarp;
  std::uint32_t pos[kKeys];
  std::uint64_t raw[kKeys];
  if (lane == 0) warp_defaults[threadIdx.x / 32] = 0;
  __syncwarp();
  key_positions<kKeys, kGroupsPerWarp>(warp * kKeysPerWarp, group, n, pos);
  load_raw_keys(input, pos, raw);
  for (std::uint64_t base = warp * kKeysPerWarp; base < n; base += stride) {
    std::int64_t key[kKeys];
    std::uint32_t bucket[kKeys];
    BucketEntries<kLanes> entries[kKeys];

    // A-B. This iteration's keys arrived during the last one (fetch the next iteration's now);
    // home buckets; entries.
    std::uint32_t next_pos[kKeys];
    std::uint64_t next_raw[kKeys];
    key_positions<kKeys, kGroupsPerWarp>(base + stride, group, n, next_pos);
    load_raw_keys(input, next_pos, next_raw);
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      key[k] = 0;
      bucket[k] = 0;
      entries[k].clear();
      if (pos[k] == kDeadPosition) continue;
      if (!canonical_from_raw(input, raw[k], key[k])) {
        if (rank == 0) atomicMin(&status->first_invalid, static_cast<unsigned long long>(pos[k]));
        pos[k] = kDeadPosition;
        continue;
      }
      bucket[k] = static_cast<std::uint32_t>(reduce_hash(murmur3_fmix64(key[k]), table.num_buckets));
      entries[k].load(table.entries + static_cast<std::uint64_t>(bucket[k]) * kEntriesPerBucket, rank);
    }

    // C. Decide per key; keys whose home bucket is full without them look at the next bucket.
    int outcome[kKeys];
    int index[kKeys];
    std::uint32_t row_id[kKeys];
    std::uint32_t before[kKeys];
    bool any_next = false;
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      outcome[k] = entries[k].decide(key[k], rank, group_base, row_id[k], before[k], index[k]);
      if (pos[k] == kDeadPosition) outcome[k] = kAbsent;
      any_next = any_next || outcome[k] == kNextBucket;
    }
    if (__any_sync(kFullMask, any_next)) {
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        if (outcome[k] != kNextBucket) continue;
        bucket[k] = bucket[k] + 1 == table.num_buckets ? 0u : bucket[k] + 1;
        entries[k].load(table.entries + static_cast<std::uint64_t>(bucket[k]) * kEntriesPerBucket, rank);
      }
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        std::uint32_t r = 0, b = 0;
        int i = 0;
        const int second = entries[k].decide(key[k], rank, group_base, r, b, i);
        if (outcome[k] == kNextBucket) outcome[k] = second, row_id[k] = r, before[k] = b, index[k] = i;
      }
    }
    // Count the defaults decided here (the slow path counts its own): one ballot per key, lane 0
    // adds to the warp's shared counter.
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      const std::uint32_t votes = __ballot_sync(kFullMask, outcome[k] == kAbsent && pos[k] != kDeadPosition && rank == 0);
      if (lane == 0 && votes != 0) count_defaults(static_cast<unsigned int>(__popc(votes)));
    }
    if constexpr (kStrict) fence_gpu();

    // D. Row chunks of the keys found, into registers.
    typename Chunk::Bits data[kKeys][kChunks];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
#pragma unroll
      for (int j = 0; j < kChunks; ++j) data[k][j] = typename Chunk::Bits{};
      if (outcome[k] != kFound) continue;
      const T* row = rows + static_cast<std::uint64_t>(row_id[k]) * dim;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) {
        const std::uint32_t c = rank + static_cast<std::uint32_t>(j * kLanes);
        if (c < chunks) data[k][j] = Chunk::load_bits(row, c);
      }
    }
    if (wide_rows) {
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        if (outcome[k] != kFound) continue;
        float* dst = out + static_cast<std::uint64_t>(pos[k]) * dim;
        const T* row = rows + static_cast<std::uint64_t>(row_id[k]) * dim;
        for (std::uint32_t c = rank + kLanes * kChunks; c < chunks; c += kLanes) {
          Chunk::to_output(dst, c, Chunk::load_bits(row, c));  // rewritten by the slow path if the row changed
        }
      }
    }

    // E. The version "after", read once the row reads are complete.
    if (kStrict || wide_rows) fence_gpu();
    bool unchanged[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      unchanged[k] = true;
      if (outcome[k] != kFound) continue;
      std::uint32_t after_dependency = 0;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) after_dependency ^= Chunk::first_word(data[k][j]);
      after_dependency &= zero;
      const std::uint64_t at = static_cast<std::uint64_t>(bucket[k]) * kEntriesPerBucket + static_cast<std::uint64_t>(index[k]);
      unchanged[k] = load_relaxed_u32(&table.entries[at + after_dependency].seq) == before[k];
    }

    // F. Write rows and defaults; everything else takes the slow path.
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      const bool whole = (__ballot_sync(kFullMask, unchanged[k]) & group_mask) == group_mask;
      float* dst = out + static_cast<std::uint64_t>(pos[k]) * dim;
      if (outcome[k] == kFound && whole) {
#pragma unroll
        for (int j = 0; j < kChunks; ++j) {
          const std::uint32_t c = rank + static_cast<std::uint32_t>(j * kLanes);
          if (c < chunks) Chunk::to_output(dst, c, data[k][j]);
        }
      } else if (outcome[k] == kAbsent) {
        if (pos[k] != kDeadPosition) write_default<Chunk::kElems>(dst, chunks, rank, kLanes, default_value);
      } else {
        static_probe_slow<T, kVector, kLanes>(table, key[k], reduce_hash(murmur3_fmix64(key[k]), table.num_buckets), dst,
                                              rank, group_base, group_mask, default_value);
      }
    }
#pragma unroll
    for (int k = 0; k < kKeys; ++k) pos[k] = next_pos[k], raw[k] = next_raw[k];
  }
  // One global atomic per warp that served defaults.
  __syncwarp();
  if (lane == 0 && warp_defaults[threadIdx.x / 32] != 0) {
    atomicAdd(defaults_served, static_cast<unsigned long long>(warp_defaults[threadIdx.x / 32]));
  }
}

template <typename T, bool kVector, int kLanes, int kChunks, int kKeys, bool kStrict>
struct StaticLookupLauncher {
  static void launch(const StaticTableView& table, const KeyInput& input, std::uint64_t n, float* out,
                     float default_value, LookupStatus* status, LookupStatus* next, unsigned long long* defaults_served,
                     int sm_count, cudaStream_t stream) {
    constexpr std::uint64_t kKeysPerBlock = kBlockThreads / kLanes * kKeys;
    // One wave of resident blocks: a partial second wave would leave SMs idle at the end.
    static const int per_sm = resident_blocks_per_sm(static_lookup_kernel<T, kVector, kLanes, kChunks, kKeys, kStrict>, kBlockThreads);
    const unsigned blocks = grid_blocks(n, kKeysPerBlock, sm_count, per_sm);
    static_lookup_kernel<T, kVector, kLanes, kChunks, kKeys, kStrict>
        <<<blocks, kBlockThreads, 0, stream>>>(table, input, n, out, default_value, status, next, defaults_served, 0u);
    HPS_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace

void launch_static_lookup(const StaticTableView& table, bool half, const KeyInput& input, std::uint64_t n,
                          float* out, float default_value, LookupStatus* status, LookupStatus* next,
                          unsigned long long* defaults_served, ProbeShape shape, int sm_count, cudaStream_t stream) {
  if (n == 0) return;
  const ResolvedShape resolved = resolve_probe_shape(table.dim, half ? 2 : 4, out, shape);
  dispatch_probe_shape<StaticLookupLauncher>(half, resolved, table, input, n, out, default_value, status, next,
                                             defaults_served, sm_count, stream);
}

}  // namespace hps::cuda

// Writer kernels of the static cache.
//
// One warp per key; lane 0 walks the probe sequence, all lanes copy the row. Writers of one
// cache are serialised on its writer stream, and the keys of one batch are unique, so the only
// race inside a kernel is two warps claiming the same free entry for different keys: the claim is
// a compare-and-swap of the entry's seq word that sets "busy"; the loser probes again.
// Entries never move and never become empty again (an erase leaves an "erased" entry that a later
// insert may reuse), so a reader's probe never skips a key that stays in the table.
// Protocol of a row rewrite, validated by readers: seq |= busy; fence; write the row (and the key
// and row id of a new entry); fence; seq = occupied, counter + 1.
#include <cuda_fp16.h>

#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/probe_dispatch.cuh"
#include "gpu/static_write_kernels.hpp"

namespace hps::cuda {
namespace {

constexpr int kWriteBlockThreads = 128;
constexpr std::uint32_t kFullMask = 0xFFFFFFFFu;
constexpr std::uint64_t kNotFound = ~0ull;

__device__ __forceinline__ std::uint32_t entry_state(std::uint32_t seq) { return (seq >> 1) & 3u; }

__device__ __forceinline__ std::uint32_t next_seq(std::uint32_t old_seq, std::uint32_t state) {
  return ((((old_seq >> 3) + 1u) & 0x1FFFFFFFu) << 3) | (state << 1);
}

/// The entry holding `key`, or kNotFound. `seq` receives its seq word.
__device__ std::uint64_t find_entry(const StaticTableView& table, std::int64_t key, std::uint32_t& seq) {
  std::uint64_t bucket = reduce_hash(murmur3_fmix64(key), table.num_buckets);
  for (std::uint64_t probed = 0; probed < table.num_buckets; ++probed) {
    for (int e = 0; e < kEntriesPerBucket; ++e) {
      const std::uint64_t index = bucket * kEntriesPerBucket + static_cast<std::uint64_t>(e);
      const uint4 v = load_relaxed_v4(table.entries + index);
      const std::uint32_t state = entry_state(v.w);
      if (state == kStateOccupied && join_key(v.x, v.y) == key) {
        seq = v.w;
        return index;
      }
      if (state == kStateEmpty && (v.w & kSeqBusy) == 0) return kNotFound;
    }
    bucket = bucket + 1 == table.num_buckets ? 0 : bucket + 1;
  }
  return kNotFound;
}

enum class Action : int { kNone = 0, kOverwrite = 1, kFill = 2 };

/// Lane 0: locates `key` for an upsert. Either the key's entry (kOverwrite), or a free entry
/// claimed for it (kFill, seq already busy). `seq` is the entry's seq before this write.
__device__ Action locate_for_upsert(const StaticTableView& table, std::int64_t key, std::uint64_t& index,
                                    std::uint32_t& seq) {
  for (;;) {
    std::uint64_t bucket = reduce_hash(murmur3_fmix64(key), table.num_buckets);
    std::uint64_t free_index = kNotFound;
    std::uint32_t free_seq = 0;
    bool done = false;
    for (std::uint64_t probed = 0; probed < table.num_buckets && !done; ++probed) {
      for (int e = 0; e < kEntriesPerBucket && !done; ++e) {
        const std::uint64_t at = bucket * kEntriesPerBucket + static_cast<std::uint64_t>(e);
        const uint4 v = load_relaxed_v4(table.entries + at);
        const std::uint32_t state = entry_state(v.w);
        if (state == kStateOccupied && join_key(v.x, v.y) == key) {
          index = at;
          seq = v.w;
          return Action::kOverwrite;
        }
        if ((v.w & kSeqBusy) != 0) continue;  // another warp is claiming it: neither free nor the end
        if (state != kStateOccupied && free_index == kNotFound) {
          free_index = at;
          free_seq = v.w;
        }
        if (state == kStateEmpty) done = true;  // the key is not further along
      }
      bucket = bucket + 1 == table.num_buckets ? 0 : bucket + 1;
    }
    if (free_index == kNotFound) return Action::kNone;  // cannot happen below the load-factor limit
    if (atomicCAS(&table.entries[free_index].seq, free_seq, free_seq | kSeqBusy) == free_seq) {
      index = free_index;
      seq = free_seq;
      return Action::kFill;
    }
    // Another warp claimed that entry first: probe again.
  }
}

__global__ void static_init_kernel(const StaticTableView table) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < table.capacity; i += stride) {
    table.free_rows[i] = static_cast<std::uint32_t>(table.capacity - 1 - i);  // pops hand out 0, 1, 2...
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    table.counters->free_top = table.capacity;
    table.counters->absent = 0;
  }
}

__global__ void static_count_absent_kernel(const StaticTableView table, const WriteBatch batch) {
  const std::uint64_t n = batch.count != nullptr ? min(static_cast<std::uint64_t>(*batch.count), batch.n) : batch.n;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    std::uint32_t seq = 0;
    if (find_entry(table, batch.keys[i], seq) == kNotFound) atomicAdd(&table.counters->absent, 1u);
  }
}

template <typename T, bool kVector>
__global__ void __launch_bounds__(kWriteBlockThreads)
    static_write_kernel(const StaticTableView table, const WriteBatch batch, const WriteKind kind) {
  using Chunk = RowChunk<T, kVector>;
  const unsigned lane = threadIdx.x % 32;
  const std::uint64_t warp = (static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const std::uint64_t warps = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / 32;
  const std::uint64_t n = batch.count != nullptr ? min(static_cast<std::uint64_t>(*batch.count), batch.n) : batch.n;
  const std::uint32_t dim = table.dim;
  const std::uint32_t chunks = dim / Chunk::kElems;
  T* rows = static_cast<T*>(table.rows);

  for (std::uint64_t i = warp; i < n; i += warps) {
    const std::int64_t key = batch.keys[i];
    bool upsert = kind == WriteKind::kInsert || kind == WriteKind::kUpdate;
    bool erase = kind == WriteKind::kErase;
    const bool refresh_update = kind == WriteKind::kRefresh && batch.found[i] != 0;
    if (kind == WriteKind::kRefresh && !refresh_update) erase = true;

    // Lane 0 decides; the decision is broadcast so the warp stays uniform.
    int action = static_cast<int>(Action::kNone);
    std::uint64_t index = 0;
    std::uint32_t seq = 0;
    std::uint32_t row_id = 0;
    if (lane == 0) {
      if (upsert) {
        action = static_cast<int>(locate_for_upsert(table, key, index, seq));
      } else {
        index = find_entry(table, key, seq);
        if (index != kNotFound) {
          if (erase) {
            // One store would do, but a CAS keeps a duplicated key from freeing its row twice.
            const std::uint32_t erased = next_seq(seq, kStateErased);
            if (atomicCAS(&table.entries[index].seq, seq, erased) == seq) {
              const unsigned top = atomicAdd(&table.counters->free_top, 1u);
              table.free_rows[top] = table.entries[index].row;
            }
          } else {
            action = static_cast<int>(Action::kOverwrite);  // refresh of a present key
          }
        }
      }
      if (action == static_cast<int>(Action::kOverwrite)) {
        row_id = table.entries[index].row;
        store_relaxed_u32(&table.entries[index].seq, seq | kSeqBusy);
        fence_gpu();  // readers see "busy" before the row changes
      } else if (action == static_cast<int>(Action::kFill)) {
        const unsigned top = atomicSub(&table.counters->free_top, 1u) - 1u;
        row_id = table.free_rows[top];
        store_relaxed_u64(&table.entries[index].key, static_cast<std::uint64_t>(key));
        store_relaxed_u32(&table.entries[index].row, row_id);
      }
    }
    action = __shfl_sync(kFullMask, action, 0);
    if (action == static_cast<int>(Action::kNone)) continue;
    row_id = __shfl_sync(kFullMask, row_id, 0);

    const float* src = batch.rows + (batch.row_index != nullptr ? batch.row_index[i] : i) * dim;
    T* dst = rows + static_cast<std::uint64_t>(row_id) * dim;
    for (std::uint32_t c = lane; c < chunks; c += 32) {
      float v[Chunk::kElems];
      load_input<Chunk::kElems>(src, c, v);
      Chunk::store_relaxed(dst, c, v);
    }
    fence_gpu();  // every lane: row (and entry) stores before the final seq store
    __syncwarp();
    if (lane == 0) store_relaxed_u32(&table.entries[index].seq, next_seq(seq, kStateOccupied));
  }
}

__global__ void static_dump_kernel(const StaticTableView table, const std::uint64_t first_entry,
                                   const std::uint64_t end_entry, std::int64_t* keys_out, unsigned long long* count) {
  const unsigned lane = threadIdx.x % 32;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t base = first_entry + static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + (threadIdx.x - lane);
       base < end_entry; base += stride) {
    const std::uint64_t index = base + lane;
    bool held = false;
    std::int64_t key = 0;
    if (index < end_entry) {
      const uint4 v = load_relaxed_v4(table.entries + index);
      held = entry_state(v.w) == kStateOccupied && (v.w & kSeqBusy) == 0;
      key = join_key(v.x, v.y);
    }
    const std::uint32_t votes = __ballot_sync(kFullMask, held);
    if (votes == 0) continue;
    const int leader = __ffs(static_cast<int>(votes)) - 1;
    unsigned long long at = 0;
    if (static_cast<int>(lane) == leader) at = atomicAdd(count, static_cast<unsigned long long>(__popc(votes)));
    at = __shfl_sync(kFullMask, at, leader);
    if (held) keys_out[at + static_cast<unsigned long long>(__popc(votes & lanes_below(lane)))] = key;
  }
}

}  // namespace

void launch_static_init(const StaticTableView& table, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(std::min<std::uint64_t>((table.capacity + 255) / 256 + 1, 65535));
  static_init_kernel<<<blocks, 256, 0, stream>>>(table);
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_static_count_absent(const StaticTableView& table, const WriteBatch& batch, int sm_count,
                                cudaStream_t stream) {
  if (batch.n == 0) return;
  static_count_absent_kernel<<<grid_blocks(batch.n, 256, sm_count), 256, 0, stream>>>(table, batch);
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_static_write(const StaticTableView& table, bool half, const WriteBatch& batch, WriteKind kind,
                         int sm_count, cudaStream_t stream) {
  if (batch.n == 0) return;
  const bool vector = table.dim % (half ? 8 : 4) == 0;
  const unsigned blocks = grid_blocks(batch.n, kWriteBlockThreads / 32, sm_count, 16);
  if (half) {
    if (vector) {
      static_write_kernel<__half, true><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind);
    } else {
      static_write_kernel<__half, false><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind);
    }
  } else if (vector) {
    static_write_kernel<float, true><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind);
  } else {
    static_write_kernel<float, false><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind);
  }
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_static_dump(const StaticTableView& table, std::uint64_t first_bucket, std::uint64_t end_bucket,
                        std::int64_t* keys_out, unsigned long long* count, int sm_count, cudaStream_t stream) {
  if (end_bucket <= first_bucket) return;
  const std::uint64_t first = first_bucket * kEntriesPerBucket;
  const std::uint64_t end = end_bucket * kEntriesPerBucket;
  static_dump_kernel<<<grid_blocks(end - first, 256, sm_count), 256, 0, stream>>>(table, first, end, keys_out, count);
  HPS_CUDA_CHECK_LAUNCH();
}

}  // namespace hps::cuda

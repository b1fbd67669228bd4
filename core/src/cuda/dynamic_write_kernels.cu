// Writer kernels of the dynamic cache.
//
// One warp per key. Writers of one cache are serialised on its writer stream, so two kernels
// never write at once; inside a kernel, warps whose keys share a set take that set's lock (a
// word only writers use; readers never look at it). Under the lock the warp reads the set's 8
// slots (lane j holds slot j), picks the slot (the key's own, else an empty one, else the least
// recently used) and rewrites it with the seqlock protocol readers validate against:
//   meta |= busy; fence; write record and row; fence; meta = new digest, counter + 1, occupied.
// An erase is one store of the meta word (counter + 1, not occupied).
#include <cuda_fp16.h>

#include "cuda/cuda_check.hpp"
#include "cuda/device_primitives.cuh"
#include "cuda/dynamic_write_kernels.hpp"
#include "cuda/probe_dispatch.cuh"

namespace hps::cuda {
namespace {

constexpr int kWriteBlockThreads = 128;
constexpr std::uint32_t kFullMask = 0xFFFFFFFFu;

__device__ __forceinline__ std::uint32_t make_meta(std::uint32_t digest, std::uint32_t old_meta, bool occupied) {
  const std::uint32_t counter = ((old_meta >> 2) + 1u) & 0x3FFFu;
  return (digest << 16) | (counter << 2) | (occupied ? kMetaOccupied : 0u);
}

__device__ __forceinline__ void lock_set(std::uint32_t* lock) {
  while (atomicCAS(lock, 0u, 1u) != 0u) __nanosleep(64);
  fence_gpu();  // acquire: see the previous holder's writes
}

__device__ __forceinline__ void unlock_set(std::uint32_t* lock) {
  fence_gpu();  // release: our writes before the lock is seen free
  atomicExch(lock, 0u);
}

template <typename T, bool kVector>
__global__ void __launch_bounds__(kWriteBlockThreads)
    dynamic_write_kernel(const DynamicTableView table, const WriteBatch batch, const WriteKind kind,
                         const std::uint32_t epoch) {
  using Chunk = RowChunk<T, kVector>;
  const unsigned lane = threadIdx.x % 32;
  const std::uint64_t warp = (static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const std::uint64_t warps = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / 32;
  const std::uint64_t n = batch.count != nullptr ? min(static_cast<std::uint64_t>(*batch.count), batch.n) : batch.n;
  const std::uint32_t dim = table.dim;
  const std::uint32_t chunks = dim / Chunk::kElems;
  T* rows = static_cast<T*>(table.rows);

  for (std::uint64_t i = warp; i < n; i += warps) {
    WriteKind action = kind;
    if (kind == WriteKind::kInsert && batch.found != nullptr && batch.found[i] == 0) continue;
    if (kind == WriteKind::kRefresh) action = batch.found[i] != 0 ? WriteKind::kUpdate : WriteKind::kErase;
    const std::int64_t key = batch.keys[i];
    const std::uint64_t hash = mix_key(key);
    const std::uint64_t set = reduce_hash(hash, table.num_sets);
    const std::uint32_t digest = static_cast<std::uint32_t>(hash & 0xFFFFu);
    const std::uint64_t first_slot = set * kSlotsPerSet;

    if (lane == 0) lock_set(table.set_locks + set);
    __syncwarp();

    // Lane j < 8 holds slot j's state; only writers change it and we hold the set's lock.
    std::uint32_t meta = 0;
    std::int64_t slot_key = 0;
    std::uint32_t stamp = 0;
    if (lane < kSlotsPerSet) {
      meta = load_relaxed_u32(table.meta + first_slot + lane);
      const uint4 record = load_relaxed_v4(table.records + first_slot + lane);
      slot_key = join_key(record.x, record.y);
      stamp = record.z;
    }
    const bool occupied = lane < kSlotsPerSet && (meta & kMetaOccupied) != 0;
    const std::uint32_t same = __ballot_sync(kFullMask, occupied && slot_key == key);
    int slot = -1;
    if (same != 0) {
      slot = __ffs(static_cast<int>(same)) - 1;
    } else if (action == WriteKind::kInsert) {
      const std::uint32_t empty = __ballot_sync(kFullMask, lane < kSlotsPerSet && !occupied);
      if (empty != 0) {
        slot = __ffs(static_cast<int>(empty)) - 1;
      } else {
        // Least recently used: the largest age (epoch - stamp, wrap-safe), lowest slot on ties.
        std::uint32_t age = lane < kSlotsPerSet ? epoch - stamp : 0u;
        int victim = static_cast<int>(lane);
#pragma unroll
        for (int offset = kSlotsPerSet / 2; offset > 0; offset /= 2) {
          const std::uint32_t other_age = __shfl_xor_sync(kFullMask, age, offset);
          const int other = __shfl_xor_sync(kFullMask, victim, offset);
          if (other_age > age || (other_age == age && other < victim)) {
            age = other_age;
            victim = other;
          }
        }
        slot = __shfl_sync(kFullMask, victim, 0);
      }
    }

    if (slot >= 0) {
      const std::uint64_t target = first_slot + static_cast<std::uint64_t>(slot);
      const std::uint32_t old_meta = __shfl_sync(kFullMask, meta, slot);
      const std::uint32_t old_stamp = __shfl_sync(kFullMask, stamp, slot);
      const bool was_occupied = (old_meta & kMetaOccupied) != 0;
      if (action == WriteKind::kErase) {
        if (lane == 0) {
          store_relaxed_u32(table.meta + target, make_meta(old_meta >> 16, old_meta, false));
          atomicAdd(table.occupied, ~0ull);  // -1
        }
      } else {
        if (lane == 0) {
          store_relaxed_u32(table.meta + target, old_meta | kMetaBusy);
          fence_gpu();  // readers see "busy" before any byte of the row changes
        }
        __syncwarp();
        const float* src = batch.rows + (batch.row_index != nullptr ? batch.row_index[i] : i) * dim;
        T* dst = rows + target * dim;
        for (std::uint32_t c = lane; c < chunks; c += 32) {
          float v[Chunk::kElems];
          load_input<Chunk::kElems>(src, c, v);
          Chunk::store_relaxed(dst, c, v);
        }
        if (lane == 0) {
          // An update keeps the slot's age; an insert makes it the most recent.
          const std::uint32_t new_stamp = action == WriteKind::kInsert ? epoch : old_stamp;
          store_relaxed_u64(&table.records[target].key, static_cast<std::uint64_t>(key));
          store_relaxed_u32(&table.records[target].stamp, new_stamp);
        }
        fence_gpu();  // every lane: its row stores before the final meta store
        __syncwarp();
        if (lane == 0) {
          store_relaxed_u32(table.meta + target, make_meta(digest, old_meta, true));
          if (!was_occupied) atomicAdd(table.occupied, 1ull);
        }
      }
    }
    __syncwarp();
    if (lane == 0) unlock_set(table.set_locks + set);
  }
}

__global__ void dynamic_dump_kernel(const DynamicTableView table, const std::uint64_t first_slot,
                                    const std::uint64_t end_slot, std::int64_t* keys_out, unsigned long long* count) {
  const unsigned lane = threadIdx.x % 32;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t base = first_slot + static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + (threadIdx.x - lane);
       base < end_slot; base += stride) {
    const std::uint64_t slot = base + lane;
    bool held = false;
    std::int64_t key = 0;
    if (slot < end_slot) {
      const std::uint32_t meta = load_relaxed_u32(table.meta + slot);
      held = (meta & (kMetaOccupied | kMetaBusy)) == kMetaOccupied;
      if (held) key = table.records[slot].key;
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

void launch_dynamic_write(const DynamicTableView& table, bool half, const WriteBatch& batch, WriteKind kind,
                          std::uint32_t epoch, int sm_count, cudaStream_t stream) {
  if (batch.n == 0) return;
  const bool vector = table.dim % (half ? 8 : 4) == 0;  // staged fp32 rows are 256-byte aligned
  const unsigned blocks = grid_blocks(batch.n, kWriteBlockThreads / 32, sm_count, 16);
  if (half) {
    if (vector) {
      dynamic_write_kernel<__half, true><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind, epoch);
    } else {
      dynamic_write_kernel<__half, false><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind, epoch);
    }
  } else if (vector) {
    dynamic_write_kernel<float, true><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind, epoch);
  } else {
    dynamic_write_kernel<float, false><<<blocks, kWriteBlockThreads, 0, stream>>>(table, batch, kind, epoch);
  }
  HPS_CUDA_CHECK_LAUNCH();
}

void launch_dynamic_dump(const DynamicTableView& table, std::uint64_t first_set, std::uint64_t end_set,
                         std::int64_t* keys_out, unsigned long long* count, int sm_count, cudaStream_t stream) {
  if (end_set <= first_set) return;
  const std::uint64_t first_slot = first_set * kSlotsPerSet;
  const std::uint64_t end_slot = end_set * kSlotsPerSet;
  const unsigned blocks = grid_blocks(end_slot - first_slot, 256, sm_count);
  dynamic_dump_kernel<<<blocks, 256, 0, stream>>>(table, first_slot, end_slot, keys_out, count);
  HPS_CUDA_CHECK_LAUNCH();
}

}  // namespace hps::cuda

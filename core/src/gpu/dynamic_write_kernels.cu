// Writer kernels of the dynamic cache.
//
// One warp per key. Writers of one cache are serialised on its writer stream, so two kernels
// never write at once; inside a kernel, warps take per-set locks (bits only writers use; readers
// never look at them). A key may live in either of its two candidate sets, so a warp locks both,
// lower index first, then reads their 16 slots (lane j < 16 holds slot j: lanes 0-7 the lower set,
// 8-15 the higher one) and picks:
//  - the key's own slot, wherever it is (insert and update overwrite it, erase frees it);
//  - for a new key below the capacity: a free slot of the emptier set; when both sets are full,
//    a resident key is moved to its own other set to make room (one step: a resident whose other
//    set has a free slot; two steps: a resident of that other set moves on to a free slot of its
//    own other set); only when no such move exists, the least recently used of the 16 is evicted
//    ("overflowed");
//  - for a new key at the capacity: the least recently used occupied slot of the 16.
// Sets beyond the two held are locked in ascending order when above the highest held, and only
// tried (never waited for) otherwise; a failed try releases everything and the warp starts over,
// so no two warps ever wait for each other in a cycle.
// Every slot change uses the seqlock protocol readers validate against:
//   meta |= busy; fence; write tag and row; fence; meta = new digest, counter + 1, occupied.
// Slots hold their key's hash (tag and digest, kernel_types.hpp), so the kernels compare hashes and
// find a resident's other set from its hash without mixing its key again.
// A move writes the key's copy into its new slot (published) before its old slot is rewritten:
// a reader sees the key in one slot or the other (or misses, and the host tiers answer).
// An erase is one store of the meta word (counter + 1, not occupied).
#include <cuda_fp16.h>

#include "gpu/cuda_check.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/dynamic_write_kernels.hpp"
#include "gpu/probe_dispatch.cuh"

namespace hps::cuda {
namespace {

constexpr int kWriteBlockThreads = 128;
constexpr std::uint32_t kFullMask = 0xFFFFFFFFu;
constexpr std::uint32_t kLowSetLanes = 0x00FFu;
constexpr std::uint32_t kHighSetLanes = 0xFF00u;
/// A warp whose extra lock was taken or whose planned move went stale starts over at most this
/// many times; the last attempt does not try to move keys (it evicts instead).
constexpr int kMaxAttempts = 64;

__device__ __forceinline__ std::uint32_t make_meta(std::uint32_t digest, std::uint32_t old_meta, bool occupied) {
  const std::uint32_t counter = ((old_meta >> 2) + 1u) & 0x3FFFu;
  return (digest << 16) | (counter << 2) | (occupied ? kMetaOccupied : 0u);
}

// Set locks are bits, 32 sets to a word (1/64 byte per slot): taken by atomicOr, released by atomicAnd.
__device__ __forceinline__ bool try_lock_set(std::uint32_t* locks, std::uint32_t set) {
  const std::uint32_t bit = 1u << (set % 32);
  if ((atomicOr(locks + set / 32, bit) & bit) != 0u) return false;
  fence_gpu();  // acquire: see the previous holder's writes
  return true;
}

__device__ __forceinline__ void lock_set(std::uint32_t* locks, std::uint32_t set) {
  while (!try_lock_set(locks, set)) __nanosleep(64);
}

__device__ __forceinline__ void unlock_set(std::uint32_t* locks, std::uint32_t set) {
  fence_gpu();  // release: our writes before the lock is seen free
  atomicAnd(locks + set / 32, ~(1u << (set % 32)));
}

/// The set of a resident key (of hash `hash`) other than `own` (the set it lives in).
__device__ __forceinline__ std::uint32_t other_set(std::uint64_t hash, std::uint32_t own, std::uint64_t num_sets) {
  std::uint32_t first = 0, second = 0;
  candidate_sets(hash, num_sets, first, second);
  return first == own ? second : first;
}

/// Free slots (not occupied, not busy) of a set, as a bit mask, read without its lock (a hint:
/// checked again under the lock before use).
__device__ __forceinline__ std::uint32_t free_slots_hint(const DynamicTableView& table, std::uint32_t set) {
  const std::uint32_t* meta = table.meta + static_cast<std::uint64_t>(set) * kSlotsPerSet;
  const uint4 a = load_relaxed_v4(meta), b = load_relaxed_v4(meta + 4);
  const std::uint32_t w[kSlotsPerSet] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  std::uint32_t mask = 0;
#pragma unroll
  for (int j = 0; j < kSlotsPerSet; ++j) {
    if ((w[j] & (kMetaOccupied | kMetaBusy)) == 0) mask |= 1u << j;
  }
  return mask;
}

/// Warp-wide choice of the lane with the largest `score` (> 0), lowest lane on ties; -1 if none.
__device__ __forceinline__ int best_lane(std::uint32_t score, unsigned lane) {
  std::uint64_t v = score == 0 ? 0 : (static_cast<std::uint64_t>(score) << 32) | (31u - lane);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const std::uint64_t other = __shfl_xor_sync(kFullMask, v, offset);
    v = other > v ? other : v;
  }
  return v == 0 ? -1 : static_cast<int>(31u - static_cast<std::uint32_t>(v & 0xFFFFFFFFu));
}

/// Copies the tag (hash bits and stamp) and row of slot `src` into slot `dst` (whole warp), with the seqlock
/// protocol on `dst`; `src` is left as it is. The caller holds both slots' set locks.
template <typename T, bool kVector>
__device__ void copy_slot(const DynamicTableView& table, std::uint64_t src, std::uint64_t dst, unsigned lane) {
  using Chunk = RowChunk<T, kVector>;
  const std::uint32_t dim = table.dim;
  const std::uint32_t chunks = dim / Chunk::kElems;
  T* rows = static_cast<T*>(table.rows);
  const std::uint32_t src_meta = load_relaxed_u32(table.meta + src);
  const std::uint32_t dst_meta = load_relaxed_u32(table.meta + dst);
  const std::uint64_t tag = load_relaxed_u64(table.tags + src);
  if (lane == 0) {
    store_relaxed_u32(table.meta + dst, dst_meta | kMetaBusy);
    fence_gpu();  // readers see "busy" before any byte of the slot changes
  }
  __syncwarp();
  for (std::uint32_t c = lane; c < chunks; c += 32) {
    float v[Chunk::kElems];
    Chunk::load_relaxed(rows + src * dim, c, v);  // fp16 -> fp32 -> fp16 is exact
    Chunk::store_relaxed(rows + dst * dim, c, v);
  }
  if (lane == 0) {
    store_relaxed_u64(table.tags + dst, tag);  // a moved key keeps its age
  }
  fence_gpu();  // every lane: its row stores before the final meta store
  __syncwarp();
  if (lane == 0) store_relaxed_u32(table.meta + dst, make_meta(src_meta >> 16, dst_meta, true));
  __syncwarp();
}

/// A planned move chain: the new key goes into `head` (a slot of its two sets, held by a
/// resident that moves to `middle`, or straight to `tail` for one step); with two steps, the
/// resident of `middle` moves on to the free slot `tail`.
struct MovePlan {
  int steps = 0;  ///< 0: none found; 1 or 2
  std::uint64_t middle = 0, tail = 0;
  std::uint64_t middle_hash = 0;  ///< hash of the key in `middle` (two steps)
  std::uint32_t middle_set = 0, tail_set = 0;  ///< sets to lock beyond the two held (middle: two steps only)
};

/// Looks for a way to free a slot of a new key's two full sets by moving residents (whole warp;
/// lane j < 16 holds `resident_hash`, the hash of candidate slot j's resident, `head_lane` receives the lane
/// whose slot the new key takes). Reads without the extra locks: the caller locks and re-checks.
__device__ MovePlan plan_moves(const DynamicTableView& table, std::uint32_t lo, std::uint32_t hi,
                               std::uint64_t resident_hash, unsigned lane, int& head_lane) {
  MovePlan plan;
  head_lane = -1;
  // One step: the resident whose other set has the most free slots.
  std::uint32_t other = 0, free_mask = 0;
  if (lane < static_cast<unsigned>(kCandidateSlots)) {
    other = other_set(resident_hash, lane < kSlotsPerSet ? lo : hi, table.num_sets);
    if (other != lo && other != hi) free_mask = free_slots_hint(table, other);
  }
  const int mover = best_lane(static_cast<std::uint32_t>(__popc(free_mask)), lane);
  if (mover >= 0) {
    const std::uint32_t set = __shfl_sync(kFullMask, other, mover);
    const std::uint32_t mask = __shfl_sync(kFullMask, free_mask, mover);
    head_lane = mover;
    plan.steps = 1;
    plan.tail = static_cast<std::uint64_t>(set) * kSlotsPerSet + static_cast<std::uint64_t>(__ffs(static_cast<int>(mask)) - 1);
    plan.tail_set = set;
    return plan;
  }
  // Two steps: for each resident in turn, a resident of its (full) other set that can move on.
  for (int j = 0; j < kCandidateSlots; ++j) {
    const std::uint32_t middle_set = __shfl_sync(kFullMask, other, j);
    if (middle_set == lo || middle_set == hi) continue;
    std::uint32_t next = 0, next_free = 0;
    std::uint64_t hash = 0;
    if (lane < static_cast<unsigned>(kSlotsPerSet)) {
      const std::uint64_t slot = static_cast<std::uint64_t>(middle_set) * kSlotsPerSet + lane;
      const std::uint32_t meta = load_relaxed_u32(table.meta + slot);
      hash = slot_hash(load_relaxed_u64(table.tags + slot), meta);
      if ((meta & (kMetaOccupied | kMetaBusy)) == kMetaOccupied) {
        next = other_set(hash, middle_set, table.num_sets);
        if (next != lo && next != hi && next != middle_set) next_free = free_slots_hint(table, next);
      }
    }
    const int q = best_lane(static_cast<std::uint32_t>(__popc(next_free)), lane);
    if (q < 0) continue;
    const std::uint32_t set = __shfl_sync(kFullMask, next, q);
    const std::uint32_t mask = __shfl_sync(kFullMask, next_free, q);
    head_lane = j;
    plan.steps = 2;
    plan.middle = static_cast<std::uint64_t>(middle_set) * kSlotsPerSet + static_cast<std::uint64_t>(q);
    plan.middle_hash = __shfl_sync(kFullMask, hash, q);
    plan.tail = static_cast<std::uint64_t>(set) * kSlotsPerSet + static_cast<std::uint64_t>(__ffs(static_cast<int>(mask)) - 1);
    plan.middle_set = middle_set;
    plan.tail_set = set;
    return plan;
  }
  return plan;
}

/// Lane 0 takes one more set lock: waits for it when it is above every set held (`highest`),
/// only tries it (a few times) otherwise, since waiting there could close a cycle.
__device__ __forceinline__ bool take_extra_lock(std::uint32_t* locks, std::uint32_t set, std::uint32_t& highest) {
  if (set > highest) {
    lock_set(locks, set);
    highest = set;
    return true;
  }
  bool got = try_lock_set(locks, set);
  for (int t = 0; t < 8 && !got; ++t) {
    __nanosleep(32);
    got = try_lock_set(locks, set);
  }
  return got;
}

/// Lane 0 releases the plan's extra locks.
__device__ __forceinline__ void unlock_plan_sets(const DynamicTableView& table, const MovePlan& plan) {
  if (plan.steps >= 1) unlock_set(table.set_locks, plan.tail_set);
  if (plan.steps == 2) unlock_set(table.set_locks, plan.middle_set);
}

/// Lane 0 takes the plan's extra set locks, lower set first. Returns (to every lane) whether all
/// were taken; on failure none of them is held (the two sets of the key still are).
__device__ bool lock_plan_sets(const DynamicTableView& table, const MovePlan& plan, std::uint32_t hi, unsigned lane) {
  int ok = 1;
  if (lane == 0) {
    std::uint32_t highest = hi;
    if (plan.steps == 1) {
      ok = take_extra_lock(table.set_locks, plan.tail_set, highest) ? 1 : 0;
    } else {
      const std::uint32_t low = min(plan.middle_set, plan.tail_set), high = max(plan.middle_set, plan.tail_set);
      if (!take_extra_lock(table.set_locks, low, highest)) {
        ok = 0;
      } else if (!take_extra_lock(table.set_locks, high, highest)) {
        unlock_set(table.set_locks, low);
        ok = 0;
      }
    }
  }
  return __shfl_sync(kFullMask, ok, 0) != 0;
}

/// Under every lock: is the plan still valid (free tail, unchanged middle)? Every lane.
__device__ bool plan_still_valid(const DynamicTableView& table, const MovePlan& plan) {
  const std::uint32_t tail_meta = load_relaxed_u32(table.meta + plan.tail);
  bool valid = (tail_meta & (kMetaOccupied | kMetaBusy)) == 0;
  if (plan.steps == 2) {
    const std::uint32_t middle_meta = load_relaxed_u32(table.meta + plan.middle);
    const std::uint64_t middle_hash = slot_hash(load_relaxed_u64(table.tags + plan.middle), middle_meta);
    valid = valid && (middle_meta & (kMetaOccupied | kMetaBusy)) == kMetaOccupied && middle_hash == plan.middle_hash;
  }
  return valid;
}

/// The least recently used occupied candidate slot (largest stamp_age, lowest lane on ties), or -1
/// when none of the 16 is occupied. Every lane.
__device__ __forceinline__ int least_recent_lane(bool occupied, std::uint16_t stamp, std::uint32_t epoch, unsigned lane) {
  // Scores are age + 1, so an occupied slot always scores above an empty one.
  const std::uint32_t score = occupied ? stamp_age(epoch, stamp) + 1u : 0u;
  return best_lane(score, lane);
}

/// Records that a new key replaced another at lookup epoch `epoch`: lookups keep exact recency
/// from here on, for a while (kRecencyWindow). Concurrent writers store nearly the same value.
__device__ __forceinline__ void note_eviction(DynamicCounters* counters, std::uint32_t epoch) {
  store_relaxed_u64(&counters->last_eviction, (std::uint64_t{1} << 32) | epoch);
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
  DynamicCounters* counters = table.counters;

  for (std::uint64_t i = warp; i < n; i += warps) {
    WriteKind action = kind;
    if (kind == WriteKind::kInsert && batch.found != nullptr && batch.found[i] == 0) continue;
    if (kind == WriteKind::kRefresh) action = batch.found[i] != 0 ? WriteKind::kUpdate : WriteKind::kErase;
    const std::int64_t key = batch.keys[i];
    const std::uint64_t hash = murmur3_fmix64(key);
    std::uint32_t first = 0, second = 0;
    candidate_sets(hash, table.num_sets, first, second);
    const std::uint32_t lo = min(first, second), hi = max(first, second);
    const std::uint32_t digest = static_cast<std::uint32_t>(hash & 0xFFFFu);
    // Lane j < 16 looks after candidate slot j.
    const bool mine = lane < static_cast<unsigned>(kCandidateSlots);
    const std::uint64_t my_slot = static_cast<std::uint64_t>(lane < kSlotsPerSet ? lo : hi) * kSlotsPerSet + (lane % kSlotsPerSet);
    bool reserved = false;  // this key holds one unit of the capacity (occupied was incremented)

    for (int attempt = 0;; ++attempt) {
      if (lane == 0) {
        lock_set(table.set_locks, lo);
        lock_set(table.set_locks, hi);
      }
      __syncwarp();
      // Slot state; only writers change it and we hold both sets' locks.
      std::uint32_t meta = 0;
      std::uint64_t resident_hash = 0;
      std::uint16_t stamp = 0;
      if (mine) {
        meta = load_relaxed_u32(table.meta + my_slot);
        const std::uint64_t tag = load_relaxed_u64(table.tags + my_slot);
        resident_hash = slot_hash(tag, meta);
        stamp = tag_stamp(tag);
      }
      const bool occupied = mine && (meta & kMetaOccupied) != 0;
      // Equal hashes are equal keys: the mix is bijective.
      const std::uint32_t same = __ballot_sync(kFullMask, occupied && resident_hash == hash);
      int target = -1;  // candidate lane whose slot the key is written to (or erased from)
      MovePlan plan;
      bool retry = false;
      if (same != 0) {
        target = __ffs(static_cast<int>(same)) - 1;
        if (reserved && lane == 0) atomicAdd(&counters->occupied, ~0ull);  // not a new key after all
        reserved = false;
      } else if (action == WriteKind::kInsert) {
        if (!reserved) {
          int got = 0;
          if (lane == 0) {
            got = atomicAdd(&counters->occupied, 1ull) < table.capacity ? 1 : 0;
            if (!got) atomicAdd(&counters->occupied, ~0ull);
          }
          reserved = __shfl_sync(kFullMask, got, 0) != 0;
        }
        if (reserved) {
          const std::uint32_t free_mask = __ballot_sync(kFullMask, mine && !occupied);
          const int free_low = __popc(free_mask & kLowSetLanes), free_high = __popc(free_mask & kHighSetLanes);
          if (free_low + free_high > 0) {
            const std::uint32_t pick = free_high > free_low ? free_mask & kHighSetLanes : free_mask & kLowSetLanes;
            target = __ffs(static_cast<int>(pick)) - 1;
          } else if (attempt + 1 < kMaxAttempts) {
            int head = -1;
            plan = plan_moves(table, lo, hi, resident_hash, lane, head);
            if (plan.steps > 0) {
              if (!lock_plan_sets(table, plan, hi, lane)) {
                plan.steps = 0;
                retry = true;
              } else if (!plan_still_valid(table, plan)) {
                if (lane == 0) unlock_plan_sets(table, plan);
                plan.steps = 0;
                retry = true;
              } else {
                target = head;
              }
            }
          }
          if (target < 0 && !retry) {
            // Both sets full and no resident can move: evict below the capacity (rare).
            target = least_recent_lane(occupied, stamp, epoch, lane);
            if (lane == 0) {
              atomicAdd(&counters->occupied, ~0ull);  // an eviction keeps the count
              atomicAdd(&counters->overflowed, 1ull);
              note_eviction(counters, epoch);
            }
            reserved = false;
          }
        } else {
          // At the capacity: the new key replaces the least recently used of its 16 slots.
          target = least_recent_lane(occupied, stamp, epoch, lane);
          if (target < 0 && lane == 0) atomicAdd(&counters->dropped, 1ull);
          if (target >= 0 && lane == 0) note_eviction(counters, epoch);
        }
      }

      if (retry) {
        __syncwarp();
        if (lane == 0) {
          unlock_set(table.set_locks, hi);
          unlock_set(table.set_locks, lo);
          __nanosleep(64u << min(attempt, 6));
        }
        __syncwarp();
        continue;
      }

      if (target >= 0) {
        const std::uint64_t head_slot = static_cast<std::uint64_t>(target < kSlotsPerSet ? lo : hi) * kSlotsPerSet +
                                        static_cast<std::uint64_t>(target % kSlotsPerSet);
        // Make room first: the chain's last key moves first, so every key stays readable somewhere.
        if (plan.steps == 2) {
          copy_slot<T, kVector>(table, plan.middle, plan.tail, lane);
          copy_slot<T, kVector>(table, head_slot, plan.middle, lane);
        } else if (plan.steps == 1) {
          copy_slot<T, kVector>(table, head_slot, plan.tail, lane);
        }
        if (plan.steps > 0 && lane == 0) atomicAdd(&counters->relocated, static_cast<unsigned long long>(plan.steps));
        const std::uint32_t old_meta = __shfl_sync(kFullMask, meta, target);
        const auto old_stamp = static_cast<std::uint16_t>(__shfl_sync(kFullMask, static_cast<std::uint32_t>(stamp), target));
        if (action == WriteKind::kErase) {
          if (lane == 0) {
            store_relaxed_u32(table.meta + head_slot, make_meta(old_meta >> 16, old_meta, false));
            atomicAdd(&counters->occupied, ~0ull);  // -1
          }
        } else {
          if (lane == 0) {
            store_relaxed_u32(table.meta + head_slot, old_meta | kMetaBusy);
            fence_gpu();  // readers see "busy" before any byte of the row changes
          }
          __syncwarp();
          const float* src = batch.rows + (batch.row_index != nullptr ? batch.row_index[i] : i) * dim;
          T* dst = rows + head_slot * dim;
          for (std::uint32_t c = lane; c < chunks; c += 32) {
            float v[Chunk::kElems];
            load_input<Chunk::kElems>(src, c, v);
            Chunk::store_relaxed(dst, c, v);
          }
          if (lane == 0) {
            // An update keeps the slot's age; an insert makes it the most recent.
            const std::uint16_t new_stamp = action == WriteKind::kInsert ? lru_stamp(epoch) : old_stamp;
            store_relaxed_u64(table.tags + head_slot, make_tag(hash, new_stamp));
          }
          fence_gpu();  // every lane: its row stores before the final meta store
          __syncwarp();
          if (lane == 0) store_relaxed_u32(table.meta + head_slot, make_meta(digest, old_meta, true));
        }
      }
      __syncwarp();
      if (lane == 0) {
        unlock_plan_sets(table, plan);
        unlock_set(table.set_locks, hi);
        unlock_set(table.set_locks, lo);
      }
      __syncwarp();
      break;
    }
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
      if (held) key = murmur3_fmix64_inverse(slot_hash(table.tags[slot], meta));
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

// Hooks through which the CPU-memory tier (HashMapTier) shares its record arena with another
// reader that takes no partition lock: a GPU reading records over PCIe from page-locked, mapped
// host memory (core/src/gpu/host_tier_index.*). CUDA-free: the GPU layer implements them.
//
// Record layout (one per stored row, in arena pages that never move):
//   [0, 8)    header: bit 0 busy, bit 1 live, bits 2-63 a counter bumped by every write
//   [8, 16)   int64 key
//   [16, 24)  access metadata (evict_least_used / evict_oldest only: 4 bytes used, 8 taken so the
//             row stays 8-byte aligned)
//   [row_offset, row_offset + 4 * dim)  fp32 row
//   rounded up to 8 bytes (so every header is 8-byte aligned).
// Writers (under the partition's exclusive lock) run a seqlock on the header: header |= busy
// (then a release fence), write key/row, header = (counter + 1) | live-or-not (release store).
// A lock-free reader loads the header (acquire), the key and row, fences (acquire), loads the
// header again, and accepts the row only when both loads are equal, not busy, live, and the key
// is the one it wanted. Readers that hold the partition lock ignore the header.
//
// Threads: see each interface. Ownership: the tier borrows listeners (remove them before they
// die) and shares ownership of the registrar.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>

namespace hps HPS_EXPORT {

constexpr std::uint64_t kRecordBusy = 1;
constexpr std::uint64_t kRecordLive = 2;
constexpr std::uint64_t kRecordCounterStep = 4;

/// Where the parts of a record are, for readers outside the tier.
struct RecordLayout {
  std::size_t record_bytes = 0;
  std::size_t key_offset = 8;
  std::size_t row_offset = 16;
  std::size_t dim = 0;
};

/// Makes host memory readable by another agent (page-locks and maps it for the GPUs). The tier
/// registers each stretch of its arena before a record in it is published, and unregisters it
/// before the memory is unmapped. Called with a partition lock held; may throw (the write that
/// needed the memory then fails with that error).
class HostMemoryRegistrar {
 public:
  virtual ~HostMemoryRegistrar() = default;
  virtual void register_range(void* ptr, std::size_t bytes) = 0;
  virtual void unregister_range(void* ptr, std::size_t bytes) noexcept = 0;
};

/// Told about records that start or stop holding a key, in the order it happened for each key.
/// records_added: the records already hold their keys and rows (live); records_removed: the
/// records held these keys (they may already be dead or reused by now). Within one call, keys are
/// distinct. Both are called with a partition's exclusive lock held, so they must be quick (queue
/// the work); flush() is called by every tier write call after its last notification, without
/// tier locks, and returns once everything notified so far is visible to lock-free readers.
class RecordListener {
 public:
  virtual ~RecordListener() = default;
  virtual void records_added(const std::int64_t* keys, const void* const* records, std::size_t n) = 0;
  virtual void records_removed(const std::int64_t* keys, const void* const* records, std::size_t n) = 0;
  virtual void flush() = 0;
};

}  // namespace hps

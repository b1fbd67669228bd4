// Hooks through which the CPU-memory tier (HashMapTier) shares its record arena with another
// reader that takes no partition lock: a GPU reading records over PCIe from page-locked, mapped
// host memory (core/src/gpu/host_tier_index.*). CUDA-free: the GPU layer implements them.
//
// Record layout (one per stored row, in arena pages that never move):
//   [0, 8)    header: bit 0 busy, bit 1 live, bits 2-63 the checksum of key and row once a
//             registrar is installed (zero before: no reader goes without the lock then)
//   [8, 16)   int64 key
//   [16, 24)  access metadata (evict_least_used / evict_oldest only: 4 bytes used, 8 taken so the
//             row stays 8-byte aligned)
//   [row_offset, row_offset + 4 * dim)  fp32 row
//   rounded up to 8 bytes (so every header is 8-byte aligned).
// Writers (under the partition's exclusive lock): header |= busy (then a release fence), write
// key/row, header = checksum | live-or-not (release store); the checksum is
// core/src/detail/record_checksum.hpp's, over the key and the row's 32-bit words. A lock-free
// reader loads header, key and row in any order, and accepts the row only when the header is not
// busy, is live, holds the checksum of the key and row it read, and the key is the one it wanted
// (a read that mixed two states fails the check but for about 2^-62). Readers that hold the
// partition lock ignore the header.
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

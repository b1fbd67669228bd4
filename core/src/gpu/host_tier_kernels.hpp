// Kernels of the host-tier index (host_tier_index.hpp): applying the tier's record notifications
// to the index, and the lookup's second kernel, which answers the GPU cache's misses from the
// CPU-memory tier's records over PCIe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "gpu/kernel_types.hpp"

namespace hps::cuda {

/// Points keys[i] at records[i] (add), or tombstones keys[i]'s entry when it still points at
/// records[i] (remove), in `table`. Keys are distinct within one call. Adds that find no room count
/// in counters->failed_adds. Enqueued on `stream`.
void launch_tier_apply(const TierTable& table, TierCounters* counters, const std::int64_t* keys,
                       const std::uint64_t* records, std::size_t n, bool add, int sm_count, cudaStream_t stream);

/// Empties every tombstone that no live entry's probe passes (kernel_types.hpp's invariant), so
/// removals and adds of new keys cannot fill the index with tombstones until every probe runs
/// round it. Safe beside lookups (a probe that would have gone on past such a tombstone finds no
/// key beyond it), not beside applies: enqueue it on the applies' stream. Adds the count to
/// counters->swept.
void launch_tier_sweep(const TierTable& table, TierCounters* counters, int sm_count, cudaStream_t stream);

/// Adds every live entry of `from` to `to` (all empty, larger): the index's next generation. On the
/// applies' stream (no adder or remover runs beside it); lookups may still read `from`.
void launch_tier_rehash(const TierTable& from, const TierTable& to, TierCounters* counters, int sm_count,
                        cudaStream_t stream);

/// Writes `table` to `descriptor` (HBM), then publishes its address in `current` (the view's
/// current word, release order): miss kernels that start, or retry, after it read that generation.
void launch_tier_publish(TierTable* descriptor, const TierTable& table, const TierTable** current,
                         cudaStream_t stream);

/// For each of the probe's misses (count on the device, at most `max_misses`): find the key in the
/// index, read its record over PCIe in one round trip, checked by the header's checksum, write the row (rounded to half when
/// `half`) to out[position], stage it for insertion; a key the index lacks gets the default row or
/// is left to the host, as `sink.absent_is_default` says. No host synchronisation.
void launch_tier_lookup(const HostTierView& view, bool half, const TierSink& sink, float* out, std::uint64_t max_misses,
                        int sm_count, cudaStream_t stream);

}  // namespace hps::cuda

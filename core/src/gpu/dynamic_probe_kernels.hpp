// The lookup kernel of the dynamic cache: converts each key, probes its two candidate sets, copies
// hit rows into the output and reports misses (compacted) and invalid keys through a MissSink.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gpu/kernel_types.hpp"

namespace hps::cuda {

/// Probes n keys; rows of hits are written to out[i * dim]. `epoch` is the lookup's LRU time.
/// Enqueued on `stream`; nothing is synchronised.
void launch_dynamic_probe(const DynamicTableView& table, bool half, const KeyInput& input, std::uint64_t n, float* out,
                          std::uint32_t epoch, const MissSink& sink, ProbeShape shape, int sm_count,
                          cudaStream_t stream);

}  // namespace hps::cuda

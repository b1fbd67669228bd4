// The lookup kernel of the static cache: the whole table is on the device, so every key is
// answered there (its row, or the default row for a key the table does not hold).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gpu/kernel_types.hpp"

namespace hps::cuda {

/// Writes the row of each of n keys (or `default_value` in every element) to out[i * dim].
/// `status`/`next` may be null when the key dtype cannot hold invalid keys; otherwise the kernel
/// records the first invalid position in status->first_invalid and resets *next. The number of
/// default rows written is added to *defaults_served (one atomic per warp).
void launch_static_lookup(const StaticTableView& table, bool half, const KeyInput& input, std::uint64_t n,
                          float* out, float default_value, LookupStatus* status, LookupStatus* next,
                          unsigned long long* defaults_served, ProbeShape shape, int sm_count, cudaStream_t stream);

}  // namespace hps::cuda

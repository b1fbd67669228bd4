// Chooses the shape of a lookup kernel from the row layout and instantiates it.
//
// A key is served by a group of `lanes` lanes (1..32); each lane holds up to `chunks` chunks of
// the row in registers, a chunk being 16 bytes of storage (4 floats or 8 halves) when the row size
// and the output alignment allow, one element otherwise. Few lanes per key and several chunks per
// lane keep the per-key state (key, set, record...) in fewer copies, so more keys fit in flight
// per SM: the lookup is bound by memory latency chains, not by bandwidth. The kernels can keep
// `keys` keys in flight per group and iteration (only 1 is built: see below). Rows wider than
// lanes x chunks read the rest in a loop.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gpu/kernel_types.hpp"
#include "hps/error.hpp"

namespace hps::cuda {

/// Resident blocks of 256 threads per SM the lookup kernels may ask of the compiler: 4 on sm_75
/// (1,024 threads per SM), 8 from sm_80 (2,048) on. Read in the device pass of each architecture.
constexpr int kMaxBlocksOf256PerSm =
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    4;
#else
    8;
#endif

struct ResolvedShape {
  bool vector = false;
  int lanes = 1;
  int chunks = 4;  ///< row chunks per lane held in registers
  int keys = 1;
  bool strict_fences = false;
};

/// Rows of `dim` elements of `elem_bytes` each, written to fp32 output at `out`.
inline ResolvedShape resolve_probe_shape(std::uint32_t dim, std::size_t elem_bytes, const void* out, ProbeShape wanted) {
  ResolvedShape shape;
  const std::size_t elems_per_chunk = 16 / elem_bytes;
  shape.vector = dim % elems_per_chunk == 0 && dim % 4 == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  const std::uint32_t row_chunks = shape.vector ? static_cast<std::uint32_t>(dim / elems_per_chunk) : dim;
  // Default (measured, docs/gpu_cache.md): 4 chunks per lane over as many lanes as the row needs,
  // but at least 2 lanes for 16-byte chunks, so each load instruction of a group covers whole
  // 32-byte sectors (one lane reading a row in 16-byte halves asks L2 for each sector twice).
  const int min_lanes = shape.vector ? 2 : 1;
  int lanes = min_lanes;
  while (lanes < 32 && static_cast<std::uint32_t>(lanes * 4) < row_chunks) lanes *= 2;
  int chunks = 4;
  while (chunks > 1 && static_cast<std::uint32_t>(lanes * (chunks / 2)) >= row_chunks) chunks /= 2;
  shape.lanes = lanes;
  shape.chunks = chunks;
  if (wanted.lanes_per_key != 0) shape.lanes = wanted.lanes_per_key;
  if (wanted.chunks_per_lane != 0) shape.chunks = wanted.chunks_per_lane;
  if (wanted.keys_per_group != 0) shape.keys = wanted.keys_per_group;
  shape.strict_fences = wanted.strict_fences;
  return shape;
}

/// The dynamic probe's shape: resolve_probe_shape's, except that fp32 rows of four 16-byte chunks
/// (D = 16) take a lane per chunk. Measured on the H100 for the probe alone: 4 lanes x 1 chunk
/// 21.4% / 23.1% of the HBM bound at 262,144 / 1M keys against 19.5% / 20.9% for 2 x 2 (the static
/// lookup goes the other way: docs/gpu_cache.md).
inline ResolvedShape resolve_dynamic_probe_shape(std::uint32_t dim, std::size_t elem_bytes, const void* out,
                                                 ProbeShape wanted) {
  ResolvedShape shape = resolve_probe_shape(dim, elem_bytes, out, wanted);
  const bool automatic = wanted.lanes_per_key == 0 && wanted.chunks_per_lane == 0;
  if (automatic && shape.vector && elem_bytes == 4 && dim == 16) {
    shape.lanes = 4;
    shape.chunks = 1;
  }
  return shape;
}

/// Calls Launcher<T, kVector, kLanes, kChunks, kKeys, kStrict>::launch(args...) for the shape.
/// Every layout gets the default shapes (one key per group, dependency-ordered reads); fp32 rows
/// on the 16-byte path also get the variants the benchmark compares (other lane/chunk splits,
/// fence-ordered reads). Two keys per group measured 2-3x slower (more than 64 registers: spills)
/// and is not built. Other requests throw InvalidArgument.
template <template <typename, bool, int, int, int, bool> class Launcher, typename... Args>
void dispatch_probe_shape(bool half, const ResolvedShape& shape, Args&&... args) {
  bool launched = false;
  auto try_shape = [&](auto type_tag, auto vector_tag, auto lanes_tag, auto chunks_tag, auto keys_tag, auto strict_tag) {
    using T = typename decltype(type_tag)::type;
    constexpr bool kVector = decltype(vector_tag)::value;
    constexpr int kLanes = decltype(lanes_tag)::value;
    constexpr int kChunks = decltype(chunks_tag)::value;
    constexpr int kKeys = decltype(keys_tag)::value;
    constexpr bool kStrict = decltype(strict_tag)::value;
    if (launched || shape.lanes != kLanes || shape.chunks != kChunks || shape.keys != kKeys ||
        shape.strict_fences != kStrict) {
      return;
    }
    Launcher<T, kVector, kLanes, kChunks, kKeys, kStrict>::launch(args...);
    launched = true;
  };
  using Yes = std::true_type;
  using No = std::false_type;
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  using Four = std::integral_constant<int, 4>;
  auto each_lanes = [&](auto body) {
    body(std::integral_constant<int, 1>{});
    body(std::integral_constant<int, 2>{});
    body(std::integral_constant<int, 4>{});
    body(std::integral_constant<int, 8>{});
    body(std::integral_constant<int, 16>{});
    body(std::integral_constant<int, 32>{});
  };
  auto defaults = [&](auto type_tag, auto vector_tag) {
    try_shape(type_tag, vector_tag, One{}, One{}, One{}, No{});
    try_shape(type_tag, vector_tag, One{}, Two{}, One{}, No{});
    try_shape(type_tag, vector_tag, Two{}, One{}, One{}, No{});
    try_shape(type_tag, vector_tag, Two{}, Two{}, One{}, No{});
    each_lanes([&](auto lanes) { try_shape(type_tag, vector_tag, lanes, Four{}, One{}, No{}); });
  };
  struct FloatTag { using type = float; };
  struct HalfTag { using type = __half; };
  if (half) {
    if (shape.vector) defaults(HalfTag{}, Yes{});
    else defaults(HalfTag{}, No{});
  } else if (!shape.vector) {
    defaults(FloatTag{}, No{});
  } else {
    defaults(FloatTag{}, Yes{});
    // Benchmark variants for fp32 rows (4 lanes x 1 chunk is also the dynamic probe's D = 16 default).
    try_shape(FloatTag{}, Yes{}, Two{}, Two{}, One{}, Yes{});
    try_shape(FloatTag{}, Yes{}, Four{}, One{}, One{}, Yes{});
    each_lanes([&](auto lanes) {
      try_shape(FloatTag{}, Yes{}, lanes, Four{}, One{}, Yes{});
      try_shape(FloatTag{}, Yes{}, lanes, One{}, One{}, No{});
      try_shape(FloatTag{}, Yes{}, lanes, Two{}, One{}, No{});
    });
  }
  HPS_EXPECTS(launched, InvalidArgument, "lookup kernel: no kernel built for ", shape.lanes, " lanes x ", shape.chunks,
              " chunks x ", shape.keys, " keys per group", shape.strict_fences ? " with fences" : "", " (",
              half ? "fp16" : "fp32", shape.vector ? ", 16-byte chunks)" : ", element chunks)");
}

/// Resident blocks per SM of `kernel` at `threads` per block (registers decide), read once.
template <typename Kernel>
int resident_blocks_per_sm(Kernel kernel, int threads) {
  int blocks = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, 0) != cudaSuccess || blocks < 1) {
    (void)cudaGetLastError();
    blocks = 4;
  }
  return blocks;
}

/// Blocks for a grid-stride kernel: enough to fill every SM, no more than the work needs.
inline unsigned grid_blocks(std::uint64_t work_items, std::uint64_t items_per_block, int sm_count, int blocks_per_sm = 8) {
  const std::uint64_t needed = (work_items + items_per_block - 1) / items_per_block;
  const std::uint64_t cap = static_cast<std::uint64_t>(std::max(sm_count, 1)) * static_cast<std::uint64_t>(blocks_per_sm);
  return static_cast<unsigned>(std::max<std::uint64_t>(1, std::min(needed, cap)));
}

}  // namespace hps::cuda

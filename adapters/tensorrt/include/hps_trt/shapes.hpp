// Shape and type rules of the HPS_TRT layer: keys of any rank and int32 or int64 elements in,
// rows keys.shape + [emb_vec_size] of float32 (or float16) out, both linear.
//
// Ownership: values only. Threading: pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hps_trt/fields.hpp"

namespace hps_trt {

/// TensorRT's Dims holds at most 8 dimensions, so keys have rank 7 at most.
inline constexpr std::int32_t kMaxRank = 8;

/// The element types the plugin tells apart (the shell maps nvinfer1::DataType onto these).
enum class ElementType { kFloat32, kFloat16, kInt32, kInt64, kOther };

/// Output dimensions for keys of dims[0..rank): the same dims then emb_vec_size. Throws for a rank
/// outside [0, kMaxRank - 1] or a negative dimension (-1, unknown, is kept as -1).
std::vector<std::int64_t> output_dims(const std::int64_t* dims, std::int32_t rank, std::int32_t emb_vec_size);

/// Whether input/output `position` (0: keys, 1: rows) may have `type` in a linear layout (`linear`),
/// given the configuration; TensorRT's supportsFormatCombination.
bool supports(std::int32_t position, ElementType type, bool linear, const PluginConfig& config);

/// Number of keys in a tensor of these dims (all known); throws on a negative dim or overflow.
std::size_t key_count(const std::int64_t* dims, std::int32_t rank);

/// Scratch bytes an enqueue of `keys` keys needs: float32 rows to convert when the output is float16.
std::size_t workspace_bytes(std::size_t keys, const PluginConfig& config);

}  // namespace hps_trt

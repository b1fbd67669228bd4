// Shape and type rules of the HPS_TRT layer.
#include "hps_trt/shapes.hpp"

#include <limits>
#include <string>

#include "hps_trt/error.hpp"

namespace hps_trt {

std::vector<std::int64_t> output_dims(const std::int64_t* dims, std::int32_t rank, std::int32_t emb_vec_size) {
  if (rank < 0 || rank > kMaxRank - 1) {
    throw PluginError("keys of rank " + std::to_string(rank) + ": the rows would have rank " +
                      std::to_string(rank + 1) + ", and TensorRT allows " + std::to_string(kMaxRank) + " at most");
  }
  std::vector<std::int64_t> out(dims, dims + rank);
  for (std::int32_t i = 0; i < rank; ++i) {
    if (dims[i] < -1) throw PluginError("keys dimension " + std::to_string(i) + " is " + std::to_string(dims[i]));
  }
  out.push_back(emb_vec_size);
  return out;
}

bool supports(std::int32_t position, ElementType type, bool linear, const PluginConfig& config) {
  if (!linear) return false;
  if (position == 0) return type == ElementType::kInt32 || type == ElementType::kInt64;
  if (position == 1) {
    return type == (config.output_type == OutputType::kFloat16 ? ElementType::kFloat16 : ElementType::kFloat32);
  }
  return false;
}

std::size_t key_count(const std::int64_t* dims, std::int32_t rank) {
  std::size_t n = 1;
  for (std::int32_t i = 0; i < rank; ++i) {
    if (dims[i] < 0) throw PluginError("keys dimension " + std::to_string(i) + " is unknown or negative");
    const auto d = static_cast<std::size_t>(dims[i]);
    if (d != 0 && n > std::numeric_limits<std::size_t>::max() / d) throw PluginError("the number of keys overflows");
    n *= d;
  }
  return n;
}

std::size_t workspace_bytes(std::size_t keys, const PluginConfig& config) {
  if (config.output_type == OutputType::kFloat32) return 0;
  return keys * static_cast<std::size_t>(config.emb_vec_size) * sizeof(float);
}

}  // namespace hps_trt

// One HPS_TRT layer's lookup through the hps C ABI.
#include "hps_trt/lookup.hpp"

#include <cstring>
#include <string>

#include "hps_trt/error.hpp"

namespace hps_trt {
namespace {

[[noreturn]] void fail(hps_status_t status, const std::string& what) {
  throw PluginError(what + ": " + hps_status_name(status) + ": " + hps_last_error());
}

}  // namespace

TableLookup::TableLookup(const PluginConfig& config) : config_(config) {
  if (hps_abi_version() != HPS_C_ABI_VERSION) {
    throw PluginError("libhps_core implements C ABI " + std::to_string(hps_abi_version()) +
                      ", this plugin was built for " + std::to_string(HPS_C_ABI_VERSION));
  }
  hps_status_t status = hps_server_acquire_file(config.ps_config_file.c_str(), nullptr, &server_);
  if (status != HPS_OK) fail(status, "cannot serve ps_config_file " + config.ps_config_file);
  try {
    status = hps_table_by_index(server_, config.model_name.c_str(), static_cast<std::size_t>(config.table_id), &table_);
    if (status != HPS_OK) {
      fail(status, "no table " + std::to_string(config.table_id) + " in model " + config.model_name);
    }
    std::size_t dim = 0;
    status = hps_table_dim(server_, table_, &dim);
    if (status != HPS_OK) fail(status, "table " + std::to_string(config.table_id));
    if (dim != static_cast<std::size_t>(config.emb_vec_size)) {
      throw PluginError("emb_vec_size " + std::to_string(config.emb_vec_size) + " does not match table " +
                        std::to_string(config.table_id) + " of model " + config.model_name + ", whose rows have " +
                        std::to_string(dim) + " floats");
    }
  } catch (...) {
    hps_server_release(server_);
    throw;
  }
}

TableLookup::TableLookup(const TableLookup& other) : config_(other.config_), server_(other.server_), table_(other.table_) {
  const hps_status_t status = hps_server_retain(server_);
  if (status != HPS_OK) fail(status, "cannot share the server");
}

TableLookup::~TableLookup() { hps_server_release(server_); }

void TableLookup::enqueue(const void* keys, ElementType key_type, std::size_t n, void* out, void* workspace, int device,
                          void* stream) const {
  hps_key_dtype_t dtype;
  if (key_type == ElementType::kInt32) {
    dtype = HPS_KEY_INT32;
  } else if (key_type == ElementType::kInt64) {
    dtype = HPS_KEY_INT64;
  } else {
    throw PluginError("keys must be int32 or int64");
  }
  if (n == 0) return;
  const bool half = config_.output_type == OutputType::kFloat16;
  if (half && workspace == nullptr) throw PluginError("float16 output needs a workspace of float32 rows");
  float* rows = half ? static_cast<float*>(workspace) : static_cast<float*>(out);
  const hps_status_t status = hps_lookup(server_, table_, keys, dtype, n, rows, device, stream);
  if (status != HPS_OK) {
    fail(status, "lookup of " + std::to_string(n) + " keys in table " + std::to_string(config_.table_id) +
                     " of model " + config_.model_name);
  }
  if (!half) return;
  const std::size_t values = n * static_cast<std::size_t>(config_.emb_vec_size);
  if (device == HPS_HOST) {
    to_half(rows, static_cast<std::uint16_t*>(out), values);
  } else {
    to_half_on_device(rows, out, values, device, stream);
  }
}

void to_half(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t x;
    std::memcpy(&x, &in[i], sizeof x);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t abs = x & 0x7fffffffu;
    std::uint32_t h;
    if (abs >= 0x7f800000u) {  // inf or NaN (NaN stays a quiet NaN)
      h = 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
    } else if (abs >= 0x477ff000u) {  // rounds past the largest half: inf
      h = 0x7c00u;
    } else if (abs < 0x38800000u) {  // a half subnormal (or zero): shift the implicit bit in, round to even
      const std::uint32_t shift = 126u - (abs >> 23);
      if (shift > 24) {
        h = 0;
      } else {
        const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        h = mant >> shift;
        const std::uint32_t rest = mant & ((1u << shift) - 1u);
        const std::uint32_t half_way = 1u << (shift - 1u);
        if (rest > half_way || (rest == half_way && (h & 1u))) ++h;
      }
    } else {  // normal: rebias the exponent, round the mantissa to 10 bits (to even)
      h = ((abs - 0x38000000u) >> 13);
      const std::uint32_t rest = abs & 0x1fffu;
      if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    }
    out[i] = static_cast<std::uint16_t>(sign | h);
  }
}

}  // namespace hps_trt

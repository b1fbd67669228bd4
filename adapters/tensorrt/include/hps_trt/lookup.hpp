// The work of an HPS_TRT layer: one lookup through the hps C ABI, on the caller's stream.
//
// A TableLookup holds a counted reference to the process-wide server of its config file
// (hps_server_acquire_file: every plugin, engine and adapter in the process naming the same file
// shares one server) and the resolved table, checked against emb_vec_size when it is made.
//
// Ownership: the server reference is the object's; copies retain it, the destructor releases it.
// Buffers passed to enqueue are borrowed for the call.
// Threading: enqueue may run from many threads at once (TensorRT execution contexts); the object
// is not modified after construction.
#pragma once

#include <cstddef>

#include "hps/c_api.h"
#include "hps_trt/fields.hpp"
#include "hps_trt/shapes.hpp"

namespace hps_trt {

class TableLookup {
 public:
  /// Builds (or joins) the server of config.ps_config_file and resolves the table. Throws
  /// PluginError with the library's message when the config cannot be served, the model or
  /// table does not exist, or emb_vec_size differs from the table's row width.
  explicit TableLookup(const PluginConfig& config);
  TableLookup(const TableLookup& other);
  TableLookup& operator=(const TableLookup&) = delete;
  ~TableLookup();

  const PluginConfig& config() const { return config_; }

  /// Rows of keys[0..n) into out[n][emb_vec_size] (config().output_type elements). `device` is a
  /// CUDA ordinal with device buffers ordered on `stream`, or HPS_HOST for host buffers.
  /// `workspace` holds workspace_bytes(n) bytes (unused for float32 output). Throws PluginError.
  void enqueue(const void* keys, ElementType key_type, std::size_t n, void* out, void* workspace, int device,
               void* stream) const;

 private:
  PluginConfig config_;
  hps_server_t* server_ = nullptr;
  hps_table_t table_{};
};

/// float32 -> float16 (round to nearest even), on the host.
void to_half(const float* in, std::uint16_t* out, std::size_t n);

/// The same on CUDA device `device`, queued on `stream`; throws when this build has no CUDA.
void to_half_on_device(const float* in, void* out, std::size_t n, int device, void* stream);

}  // namespace hps_trt

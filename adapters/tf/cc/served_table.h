// One table of an hps server, as an op kernel holds it: acquired once when the kernel is built,
// released when the kernel is destroyed.
//
// Ownership: owns one counted reference to the process-wide server of its config (the core's
// registry shares it with hps.HPS, hps.torch and other kernels on the same config).
// Threading: Open() runs once, before any Lookup(); Lookup() may run on many threads at once
// (TensorFlow calls Compute concurrently on one kernel; the C ABI's handles allow it).
#ifndef HPS_TF_SERVED_TABLE_H_
#define HPS_TF_SERVED_TABLE_H_

#include <cstdint>
#include <string>

#include "hps/c_api.h"
#include "tensorflow/core/platform/status.h"

namespace hps_tf {

class ServedTable {
 public:
  ServedTable() = default;
  ~ServedTable();
  ServedTable(const ServedTable&) = delete;
  ServedTable& operator=(const ServedTable&) = delete;

  // Acquires the server of `config` (a file path, re-pointed by config_map.h, or JSON text) and
  // finds table `table_id` of `model`, whose rows must have `emb_vec_size` floats.
  absl::Status Open(const std::string& config, const std::string& model, int64_t table_id, int64_t emb_vec_size);

  // rows[n][dim] for keys[0..n); host memory (device == HPS_HOST) or both on CUDA device
  // `device`, ordered on `stream` (a cudaStream_t).
  absl::Status Lookup(const void* keys, hps_key_dtype_t dtype, size_t n, float* rows, int device,
                      void* stream) const;

  const std::string& config() const { return config_; }

 private:
  hps_server_t* server_ = nullptr;
  hps_table_t table_{};
  std::string config_;  // the config actually served (after re-pointing)
  std::string model_;
  int64_t table_id_ = 0;
};

// A TensorFlow status carrying the message of this thread's last failing hps call.
absl::Status FromHps(hps_status_t status, const std::string& context);

}  // namespace hps_tf

#endif  // HPS_TF_SERVED_TABLE_H_

#include "served_table.h"

#include "config_map.h"
#include "tensorflow/core/platform/errors.h"

namespace hps_tf {

absl::Status FromHps(hps_status_t status, const std::string& context) {
  std::string message = "hps: " + context + ": " + hps_last_error() + " [" + hps_status_name(status) + "]";
  switch (status) {
    case HPS_OK:
      return absl::OkStatus();
    case HPS_ERROR_INVALID_ARGUMENT:
      return absl::InvalidArgumentError(message);
    case HPS_ERROR_NOT_FOUND:
      return absl::NotFoundError(message);
    case HPS_ERROR_CONFIG:
      return absl::FailedPreconditionError(message);
    case HPS_ERROR_BACKEND_UNAVAILABLE:
      return absl::UnavailableError(message);
    case HPS_ERROR_OUT_OF_MEMORY:
      return absl::ResourceExhaustedError(message);
    case HPS_ERROR_IO:
      // A missing file is what TensorFlow's own file ops call NotFound; anything else unreadable
      // (short or corrupt table files) is data loss.
      if (message.find("No such file or directory") != std::string::npos) return absl::NotFoundError(message);
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

ServedTable::~ServedTable() { hps_server_release(server_); }

absl::Status ServedTable::Open(const std::string& config, const std::string& model, int64_t table_id,
                               int64_t emb_vec_size) {
  if (hps_abi_version() != HPS_C_ABI_VERSION) {
    return absl::FailedPreconditionError("hps: the op library was built for C ABI " +
                                         std::to_string(HPS_C_ABI_VERSION) + " but libhps_core implements " +
                                         std::to_string(hps_abi_version()) + ": rebuild it (python -m hps.tf.build)");
  }
  config_ = ResolveConfig(config);
  model_ = model;
  table_id_ = table_id;
  if (config_.empty()) return absl::InvalidArgumentError("hps: ps_config is empty: give a config file path");
  bool json = config_[0] == '{';
  hps_status_t status = json ? hps_server_acquire_json(config_.c_str(), nullptr, nullptr, &server_)
                             : hps_server_acquire_file(config_.c_str(), nullptr, &server_);
  if (status != HPS_OK) {
    server_ = nullptr;
    return FromHps(status, json ? "cannot serve the config given as JSON" : "cannot serve config '" + config_ + "'");
  }
  status = hps_table_by_index(server_, model.c_str(), static_cast<size_t>(table_id), &table_);
  if (status != HPS_OK) return FromHps(status, "model '" + model + "', table_id " + std::to_string(table_id));
  size_t dim = 0;
  status = hps_table_dim(server_, table_, &dim);
  if (status != HPS_OK) return FromHps(status, "model '" + model + "', table_id " + std::to_string(table_id));
  if (static_cast<int64_t>(dim) != emb_vec_size) {
    return absl::InvalidArgumentError("hps: emb_vec_size " + std::to_string(emb_vec_size) + " does not match table " +
                                      std::to_string(table_id) + " of model '" + model + "', whose rows have " +
                                      std::to_string(dim) + " floats (embedding_vecsize_per_table)");
  }
  return absl::OkStatus();
}

absl::Status ServedTable::Lookup(const void* keys, hps_key_dtype_t dtype, size_t n, float* rows, int device,
                                 void* stream) const {
  hps_status_t status = hps_lookup(server_, table_, keys, dtype, n, rows, device, stream);
  if (status == HPS_OK) return absl::OkStatus();
  return FromHps(status, "lookup in model '" + model_ + "', table_id " + std::to_string(table_id_));
}

}  // namespace hps_tf

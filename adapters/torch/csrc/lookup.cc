// The torch ops of hps, in C++ over hps's C ABI only, so models that call them run without Python
// (TorchScript in libtorch, AOTInductor packages, Triton's PyTorch backend):
//
//   hps::lookup(Tensor keys, str server, str model, int table, int emb_vec_size) -> Tensor
//   hps_torch::hps_embedding_lookup(Tensor input, str ps_config_file, str model_name, int table_id,
//                                   int emb_vec_size) -> Tensor          (HugeCTR's name and schema)
//
// Both return float32 [*keys.shape, emb_vec_size] on the keys' device. The CUDA kernel runs on
// torch's current stream of that device. The fake (meta) implementation is registered from Python
// (hps/torch/_op.py, torch.library.register_fake): compile and export run in Python anyway, and a
// C++ Meta kernel would make register_fake refuse to register.
// Threads: the kernels may run on many threads at once (servers.h).
#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>

#include <string>

#include "servers.h"

namespace hps_torch {
namespace {

void check_keys(const at::Tensor& keys) {
  TORCH_CHECK_TYPE(keys.scalar_type() == at::kInt || keys.scalar_type() == at::kLong,
                   "hps lookup keys must be an int32 or int64 tensor, got ", keys.scalar_type());
}

struct Resolved {
  hps_server_t* server;
  hps_table_t table;
};

// The server and table, after checking the table index and its row width like the Python op does.
Resolved resolve(const std::string& server_id, const std::string& model, int64_t table, int64_t emb_vec_size) {
  hps_server_t* server = server_for(server_id);
  TORCH_CHECK_INDEX(table >= 0, "HPS_ERROR_NOT_FOUND: model '", model, "': table_id ", table, " is out of range");
  hps_table_t handle{};
  hps_status_t status = hps_table_by_index(server, model.c_str(), static_cast<size_t>(table), &handle);
  if (status != HPS_OK) raise_status(status, hps_last_error());
  size_t dim = 0;
  status = hps_table_dim(server, handle, &dim);
  if (status != HPS_OK) raise_status(status, hps_last_error());
  TORCH_CHECK_VALUE(emb_vec_size == static_cast<int64_t>(dim), "HPS_ERROR_INVALID_ARGUMENT: emb_vec_size ", emb_vec_size,
                    " does not match table ", table, " of model '", model, "', whose rows have ", dim,
                    " floats (embedding_vecsize_per_table)");
  return {server, handle};
}

// The current stream of the keys' device as a cudaStream_t (void*), through c10's device-generic
// interface (the stream at::cuda::getCurrentCUDAStream gives): one code path for every torch build,
// no CUDA headers and no link to c10_cuda, so the library builds the same with CPU and CUDA torch.
void* current_stream(const at::Tensor& keys) {
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(keys.device()).native_handle();
}

at::Tensor lookup(const at::Tensor& keys_in, const std::string& server_id, const std::string& model, int64_t table,
                  int64_t emb_vec_size) {
  check_keys(keys_in);
  const Resolved r = resolve(server_id, model, table, emb_vec_size);
  const at::Tensor keys = keys_in.contiguous();
  std::vector<int64_t> shape(keys.sizes().begin(), keys.sizes().end());
  shape.push_back(emb_vec_size);
  at::Tensor out = at::empty(shape, keys.options().dtype(at::kFloat));
  const size_t n = static_cast<size_t>(keys.numel());
  if (n == 0) return out;
  const hps_key_dtype_t dtype = keys.scalar_type() == at::kLong ? HPS_KEY_INT64 : HPS_KEY_INT32;
  const bool cuda = keys.device().is_cuda();
  const int device = cuda ? keys.device().index() : HPS_HOST;
  void* stream = cuda ? current_stream(keys) : nullptr;
  hps_status_t status =
      hps_lookup(r.server, r.table, keys.const_data_ptr(), dtype, n, out.mutable_data_ptr<float>(), device, stream);
  if (status == HPS_ERROR_BACKEND_UNAVAILABLE && cuda) {
    // The device is deployed (checked first) but the model has no GPU cache here: look up through
    // the host and copy, ordered on the current stream, as the Python op does.
    const at::Tensor host_keys = keys.cpu();
    at::Tensor host_out = at::empty(shape, host_keys.options().dtype(at::kFloat));
    status = hps_lookup(r.server, r.table, host_keys.const_data_ptr(), dtype, n, host_out.mutable_data_ptr<float>(),
                        HPS_HOST, nullptr);
    if (status == HPS_OK) out.copy_(host_out);
  }
  if (status != HPS_OK) raise_status(status, hps_last_error());
  return out;
}

}  // namespace
}  // namespace hps_torch

// The op syncs with the host on GPU-cache misses, so it must stay out of CUDA graphs (tag
// cudagraph_unsafe, where this torch has it, as the Python op does).
#if defined(HPS_TORCH_TAG_CUDAGRAPH_UNSAFE)
#define HPS_TORCH_TAGS {at::Tag::cudagraph_unsafe}
#else
#define HPS_TORCH_TAGS {}
#endif

// One function serves both device types: the device and stream come from the keys.
TORCH_LIBRARY(hps, m) {
  m.def("lookup(Tensor keys, str server, str model, int table, int emb_vec_size) -> Tensor", HPS_TORCH_TAGS);
}

TORCH_LIBRARY_IMPL(hps, CPU, m) { m.impl("lookup", &hps_torch::lookup); }
TORCH_LIBRARY_IMPL(hps, CUDA, m) { m.impl("lookup", &hps_torch::lookup); }

TORCH_LIBRARY(hps_torch, m) {
  m.def("hps_embedding_lookup(Tensor input, str ps_config_file, str model_name, int table_id, int emb_vec_size) "
        "-> Tensor",
        HPS_TORCH_TAGS);
}

TORCH_LIBRARY_IMPL(hps_torch, CPU, m) { m.impl("hps_embedding_lookup", &hps_torch::lookup); }
TORCH_LIBRARY_IMPL(hps_torch, CUDA, m) { m.impl("hps_embedding_lookup", &hps_torch::lookup); }

// HpsLookup's GPU kernel: rows written in device memory on TensorFlow's compute stream, so they are
// ordered after the work that produced the keys and before the work that reads the rows.
//
// It needs no CUDA header: the stream and the device come from TensorFlow's StreamExecutor as an
// opaque cudaStream_t and an ordinal, which the C ABI takes as they are. Built when HPS_TF_GPU is
// defined (the build defines it when TensorFlow's headers have the StreamExecutor API); a
// TensorFlow without GPU devices never selects it.
#ifdef HPS_TF_GPU

#include "lookup_kernel.h"
#include "xla/stream_executor/device_address.h"
#include "xla/stream_executor/stream.h"
#include "xla/stream_executor/stream_executor.h"
#include "tensorflow/core/framework/device_base.h"

namespace hps_tf {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;

class LookupKernelGpu : public LookupKernelBase {
 public:
  using LookupKernelBase::LookupKernelBase;

  void Compute(OpKernelContext* context) override {
    const Tensor* keys = nullptr;
    Tensor* rows = nullptr;
    hps_key_dtype_t dtype;
    if (!Prepare(context, &keys, &rows, &dtype)) return;
    auto* device_context = context->op_device_context();
    OP_REQUIRES(context, device_context != nullptr && device_context->stream() != nullptr,
                absl::InternalError("hps: the GPU kernel of HpsLookup found no compute stream"));
    stream_executor::Stream* stream = device_context->stream();
    const int device = stream->parent()->device_ordinal();
    void* cuda_stream = stream->platform_specific_handle().stream;
    const size_t n = static_cast<size_t>(keys->NumElements());
    const void* device_keys = keys->data();
    Tensor staged;
    if (keys->dtype() == tensorflow::DT_INT32) {
      // TensorFlow keeps int32 tensors of GPU ops in host memory (the kernel asks for that
      // explicitly below); the C ABI wants keys and rows on one side, so the keys go up first, on
      // the same stream.
      OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_INT32, keys->shape(), &staged));
      stream_executor::DeviceAddressBase destination(staged.data(), n * sizeof(int32_t));
      OP_REQUIRES_OK(context, stream->Memcpy(&destination, keys->data(), n * sizeof(int32_t)));
      // The host keys may be pinned, so the copy may still be reading them when Compute returns:
      // a reference held until the stream gets past the copy keeps their buffer from being reused.
      OP_REQUIRES_OK(context, stream->DoHostCallback([held = *keys]() {}));
      device_keys = staged.data();
    }
    OP_REQUIRES_OK(context, table_.Lookup(device_keys, dtype, n, rows->flat<float>().data(), device, cuda_stream));
  }
};

REGISTER_KERNEL_BUILDER(
    Name("HpsLookup").Device(tensorflow::DEVICE_GPU).TypeConstraint<int32_t>("Tkeys").HostMemory("keys"),
    LookupKernelGpu);
REGISTER_KERNEL_BUILDER(Name("HpsLookup").Device(tensorflow::DEVICE_GPU).TypeConstraint<int64_t>("Tkeys"),
                        LookupKernelGpu);

}  // namespace hps_tf

#endif  // HPS_TF_GPU

// HpsLookup's shared kernel part and its CPU kernel (keys and rows in host memory).
#include "lookup_kernel.h"

namespace hps_tf {

using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

LookupKernelBase::LookupKernelBase(OpKernelConstruction* context) : OpKernel(context) {
  std::string config, model;
  int64_t table_id = 0;
  OP_REQUIRES_OK(context, context->GetAttr("ps_config", &config));
  OP_REQUIRES_OK(context, context->GetAttr("model_name", &model));
  OP_REQUIRES_OK(context, context->GetAttr("table_id", &table_id));
  OP_REQUIRES_OK(context, context->GetAttr("emb_vec_size", &emb_vec_size_));
  // The server is acquired once per kernel, not per call: acquiring may load every table.
  OP_REQUIRES_OK(context, table_.Open(config, model, table_id, emb_vec_size_));
}

bool LookupKernelBase::Prepare(OpKernelContext* context, const Tensor** keys, Tensor** rows,
                               hps_key_dtype_t* dtype) {
  *keys = &context->input(0);
  TensorShape shape = (*keys)->shape();
  absl::Status status = shape.AddDimWithStatus(emb_vec_size_);
  if (status.ok()) status = context->allocate_output(0, shape, rows);
  if (!status.ok()) {
    context->SetStatus(status);
    return false;
  }
  *dtype = (*keys)->dtype() == tensorflow::DT_INT64 ? HPS_KEY_INT64 : HPS_KEY_INT32;
  return (*keys)->NumElements() > 0;
}

// Keys and rows in host memory.
class LookupKernelCpu : public LookupKernelBase {
 public:
  using LookupKernelBase::LookupKernelBase;

  void Compute(OpKernelContext* context) override {
    const Tensor* keys = nullptr;
    Tensor* rows = nullptr;
    hps_key_dtype_t dtype;
    if (!Prepare(context, &keys, &rows, &dtype)) return;
    OP_REQUIRES_OK(context, table_.Lookup(keys->data(), dtype, static_cast<size_t>(keys->NumElements()),
                                          rows->flat<float>().data(), HPS_HOST, nullptr));
  }
};

REGISTER_KERNEL_BUILDER(Name("HpsLookup").Device(tensorflow::DEVICE_CPU).TypeConstraint<int32_t>("Tkeys"),
                        LookupKernelCpu);
REGISTER_KERNEL_BUILDER(Name("HpsLookup").Device(tensorflow::DEVICE_CPU).TypeConstraint<int64_t>("Tkeys"),
                        LookupKernelCpu);

}  // namespace hps_tf

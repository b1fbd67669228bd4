// The kernel shared by the CPU and GPU registrations of HpsLookup: attributes, the served table,
// the output allocation. Subclasses say where keys and rows live and on which stream.
//
// Ownership: the kernel owns its ServedTable (one server reference, released with the kernel).
// Threading: Compute may run on many threads at once; it only reads the kernel's state.
#ifndef HPS_TF_LOOKUP_KERNEL_H_
#define HPS_TF_LOOKUP_KERNEL_H_

#include <string>

#include "served_table.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace hps_tf {

class LookupKernelBase : public tensorflow::OpKernel {
 public:
  explicit LookupKernelBase(tensorflow::OpKernelConstruction* context);

 protected:
  // Checks keys and allocates rows (keys.shape + [D]); returns false when Compute has nothing more
  // to do (an error was set, or there are no keys).
  bool Prepare(tensorflow::OpKernelContext* context, const tensorflow::Tensor** keys, tensorflow::Tensor** rows,
               hps_key_dtype_t* dtype);

  ServedTable table_;
  int64_t emb_vec_size_ = 0;
};

}  // namespace hps_tf

#endif  // HPS_TF_LOOKUP_KERNEL_H_

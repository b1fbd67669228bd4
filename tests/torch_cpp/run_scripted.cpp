// Runs a TorchScript model that calls hps ops, without Python: what a libtorch server does.
//   run_scripted <libhps_torch_ops.so> <model.pt> <key> [<key> ...]
// Loads the op library (registering torch.ops.hps / hps_torch), runs the model on int64 keys [n]
// and prints the output, one row per line, so a test can compare it with Python's.
#include <dlfcn.h>
#include <torch/script.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <libhps_torch_ops.so> <model.pt> <key>...\n", argv[0]);
    return 2;
  }
  if (dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  std::vector<int64_t> keys;
  for (int i = 3; i < argc; ++i) keys.push_back(std::strtoll(argv[i], nullptr, 10));
  torch::jit::script::Module model = torch::jit::load(argv[2]);
  model.eval();
  torch::NoGradGuard no_grad;
  at::Tensor out = model.forward({torch::tensor(keys, torch::kLong)}).toTensor().contiguous().to(torch::kFloat);
  out = out.reshape({out.size(0), -1});
  for (int64_t r = 0; r < out.size(0); ++r) {
    for (int64_t c = 0; c < out.size(1); ++c) std::printf(c ? " %.9g" : "%.9g", out[r][c].item<float>());
    std::printf("\n");
  }
  return 0;
}

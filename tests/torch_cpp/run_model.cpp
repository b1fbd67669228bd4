// Runs a model that calls hps ops, without Python: what a libtorch server does.
//   run_model <libhps_torch_ops.so> <model.pt | model.pt2> <key> [<key> ...]
// Loads the op library (registering torch.ops.hps / hps_torch), then a TorchScript file (.pt) or
// an AOTInductor package (.pt2), runs it on int64 keys [n] and prints the output, one row per
// line, so a test can compare it with Python's.
#include <dlfcn.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <libhps_torch_ops.so> <model.pt|model.pt2> <key>...\n", argv[0]);
    return 2;
  }
  if (dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  std::vector<int64_t> keys;
  for (int i = 3; i < argc; ++i) keys.push_back(std::strtoll(argv[i], nullptr, 10));
  const std::string path = argv[2];
  const at::Tensor input = torch::tensor(keys, torch::kLong);
  torch::NoGradGuard no_grad;
  at::Tensor out;
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".pt2") == 0) {
    torch::inductor::AOTIModelPackageLoader loader(path);
    out = loader.run({input}).at(0);
  } else {
    torch::jit::script::Module model = torch::jit::load(path);
    model.eval();
    out = model.forward({input}).toTensor();
  }
  out = out.contiguous().to(torch::kFloat);
  out = out.reshape({out.size(0), -1});
  for (int64_t r = 0; r < out.size(0); ++r) {
    for (int64_t c = 0; c < out.size(1); ++c) std::printf(c ? " %.9g" : "%.9g", out[r][c].item<float>());
    std::printf("\n");
  }
  return 0;
}

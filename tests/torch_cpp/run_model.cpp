// Runs a model that calls hps ops, without Python: what a libtorch server does.
//   run_model <libhps_torch_ops.so> <model.pt | model.pt2> <inputs.txt>
// Loads the op library (registering torch.ops.hps / hps_torch), then a TorchScript file (.pt) or
// an AOTInductor package (.pt2), runs it on the inputs (per tensor: "int64|float32 ndim dims...
// values...", whitespace-separated text)
// and prints its first output as [rows, -1], one row per line, for a test to compare with Python's.
#include <dlfcn.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <fstream>
#include <string>

#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <libhps_torch_ops.so> <model.pt|model.pt2> <inputs.pt>\n", argv[0]);
    return 2;
  }
  if (dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  std::ifstream file(argv[3]);
  std::vector<at::Tensor> inputs;
  std::string dtype;
  while (file >> dtype) {
    int64_t ndim = 0;
    file >> ndim;
    std::vector<int64_t> shape(ndim);
    for (int64_t& d : shape) file >> d;
    std::vector<double> values(c10::multiply_integers(shape));
    for (double& v : values) file >> v;
    at::Tensor flat = torch::tensor(values, torch::kDouble);
    inputs.push_back(flat.to(dtype == "int64" ? torch::kLong : torch::kFloat).reshape(shape));
  }
  const std::string path = argv[2];
  torch::NoGradGuard no_grad;
  at::Tensor out;
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".pt2") == 0) {
    torch::inductor::AOTIModelPackageLoader loader(path);
    out = loader.run(inputs).at(0);
  } else {
    torch::jit::script::Module model = torch::jit::load(path);
    model.eval();
    out = model.forward(std::vector<c10::IValue>(inputs.begin(), inputs.end())).toTensor();
  }
  out = out.contiguous().to(torch::kFloat);
  out = out.reshape({out.size(0), -1});
  for (int64_t r = 0; r < out.size(0); ++r) {
    for (int64_t c = 0; c < out.size(1); ++c) std::printf(c ? " %.9g" : "%.9g", out[r][c].item<float>());
    std::printf("\n");
  }
  return 0;
}

// The TensorRT shell of HPS_TRT, driven through TensorRT's own interfaces (the headers only: no
// TensorRT library is loaded, so no engine is built; TensorRT would make these same calls).
// Built only where TensorRT's headers are found. The enqueue case needs a CUDA device.
#include <NvInferRuntime.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "hps/model_io.hpp"

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace fs = std::filesystem;
using namespace nvinfer1;

namespace {

constexpr int kDim = 4;

class TrtShell : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("hps_trt_shell_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(dir_);
    std::vector<std::int64_t> keys = {1, 2, 3, 40};
    for (std::size_t i = 0; i < keys.size() * kDim; ++i) rows_.push_back(static_cast<float>(i) + 0.5f);
    hps::write_sparse_model((dir_ / "t").string(), keys.data(), rows_.data(), keys.size(), kDim);
    config_ = (dir_ / "ps.json").string();
    std::ofstream(config_) << R"({"supportlonglong": true, "models": [{"model": "m", "sparse_files": [")"
                           << (dir_ / "t").string() << R"("], "embedding_vecsize_per_table": [4],
                           "deployed_device_list": [0]}]})";
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    ASSERT_EQ(n, 1);
    creator_ = static_cast<IPluginCreatorV3One*>(creators[0]);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// createPlugin over the node fields, with one of them replaced when `bad` names it.
  IPluginV3* create(int32_t dim = kDim, const char* dtype = nullptr) {
    const int32_t table = 0;
    std::vector<PluginField> fields = {
        PluginField("ps_config_file", config_.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(config_.size() + 1)),
        PluginField("model_name", "m", PluginFieldType::kCHAR, 2),
        PluginField("table_id", &table, PluginFieldType::kINT32, 1),
        PluginField("emb_vec_size", &dim, PluginFieldType::kINT32, 1)};
    if (dtype != nullptr) {
      fields.emplace_back("emb_vec_dtype", dtype, PluginFieldType::kCHAR, static_cast<int32_t>(std::strlen(dtype)));
    }
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return creator_->createPlugin("hps", &fc, TensorRTPhase::kBUILD);
  }

  fs::path dir_;
  std::string config_;
  std::vector<float> rows_;
  IPluginCreatorV3One* creator_ = nullptr;
};

DynamicPluginTensorDesc desc(DataType type, std::vector<int64_t> max) {
  DynamicPluginTensorDesc d{};
  d.desc.type = type;
  d.desc.format = TensorFormat::kLINEAR;
  d.max.nbDims = static_cast<int32_t>(max.size());
  for (std::size_t i = 0; i < max.size(); ++i) d.max.d[i] = max[i];
  return d;
}

}  // namespace

TEST_F(TrtShell, CreatorAdvertisesHugeCtrsNameAndFields) {
  EXPECT_STREQ(creator_->getPluginName(), "HPS_TRT");
  EXPECT_STREQ(creator_->getPluginVersion(), "1");
  EXPECT_STREQ(creator_->getPluginNamespace(), "");
  const PluginFieldCollection* names = creator_->getFieldNames();
  ASSERT_EQ(names->nbFields, 5);
  EXPECT_STREQ(names->fields[0].name, "ps_config_file");
  EXPECT_EQ(names->fields[0].type, PluginFieldType::kCHAR);
  EXPECT_STREQ(names->fields[3].name, "emb_vec_size");
  EXPECT_EQ(names->fields[3].type, PluginFieldType::kINT32);
}

TEST_F(TrtShell, BuildCapability) {
  std::unique_ptr<IPluginV3> plugin(create());
  ASSERT_NE(plugin, nullptr);
  auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
  EXPECT_STREQ(core->getPluginName(), "HPS_TRT");
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  EXPECT_EQ(build->getNbOutputs(), 1);
  DataType out = DataType::kINT8;
  for (DataType keys : {DataType::kINT32, DataType::kINT64}) {
    EXPECT_EQ(build->getOutputDataTypes(&out, 1, &keys, 1), 0);
    EXPECT_EQ(out, DataType::kFLOAT);
  }
  const DataType wrong = DataType::kFLOAT;
  EXPECT_NE(build->getOutputDataTypes(&out, 1, &wrong, 1), 0);
  DynamicPluginTensorDesc io[2] = {desc(DataType::kINT64, {8, 26}), desc(DataType::kFLOAT, {8, 26, kDim})};
  EXPECT_TRUE(build->supportsFormatCombination(0, io, 1, 1));
  EXPECT_TRUE(build->supportsFormatCombination(1, io, 1, 1));
  io[1].desc.type = DataType::kHALF;
  EXPECT_FALSE(build->supportsFormatCombination(1, io, 1, 1));
  io[0].desc.format = TensorFormat::kCHW32;
  EXPECT_FALSE(build->supportsFormatCombination(0, io, 1, 1));
  EXPECT_EQ(build->getWorkspaceSize(io, 1, io + 1, 1), 0u);

  std::unique_ptr<IPluginV3> half(create(kDim, "float16"));
  ASSERT_NE(half, nullptr);
  auto* half_build = static_cast<IPluginV3OneBuild*>(half->getCapabilityInterface(PluginCapabilityType::kBUILD));
  const DataType keys = DataType::kINT32;
  EXPECT_EQ(half_build->getOutputDataTypes(&out, 1, &keys, 1), 0);
  EXPECT_EQ(out, DataType::kHALF);
  EXPECT_EQ(half_build->getWorkspaceSize(io, 1, io + 1, 1), 8u * 26 * kDim * sizeof(float));
}

TEST_F(TrtShell, SerializedStateRecreatesThePlugin) {
  std::unique_ptr<IPluginV3> plugin(create());
  ASSERT_NE(plugin, nullptr);
  auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  const PluginFieldCollection* state = runtime->getFieldsToSerialize();
  ASSERT_EQ(state->nbFields, 1);
  EXPECT_STREQ(state->fields[0].name, "hps_state");
  EXPECT_EQ(state->fields[0].type, PluginFieldType::kUNKNOWN);
  std::unique_ptr<IPluginV3> again(creator_->createPlugin("hps", state, TensorRTPhase::kRUNTIME));
  ASSERT_NE(again, nullptr);
  const PluginFieldCollection* state2 =
      static_cast<IPluginV3OneRuntime*>(again->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
          ->getFieldsToSerialize();
  ASSERT_EQ(state2->fields[0].length, state->fields[0].length);
  EXPECT_EQ(std::memcmp(state2->fields[0].data, state->fields[0].data, static_cast<std::size_t>(state->fields[0].length)), 0);
  std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
  EXPECT_NE(attached, nullptr);
  std::unique_ptr<IPluginV3> cloned(plugin->clone());
  EXPECT_NE(cloned, nullptr);

  // A damaged state and bad fields give no plugin (the error goes to TensorRT's logger, here stderr).
  std::vector<std::uint8_t> damaged(static_cast<const std::uint8_t*>(state->fields[0].data),
                                    static_cast<const std::uint8_t*>(state->fields[0].data) + state->fields[0].length);
  damaged[0] = 'X';
  PluginField field("hps_state", damaged.data(), PluginFieldType::kUNKNOWN, static_cast<int32_t>(damaged.size()));
  PluginFieldCollection fc{1, &field};
  EXPECT_EQ(creator_->createPlugin("hps", &fc, TensorRTPhase::kRUNTIME), nullptr);
  EXPECT_EQ(create(8), nullptr);                 // emb_vec_size differs from the table's 4
  EXPECT_EQ(create(kDim, "int8"), nullptr);      // no such output type
  EXPECT_EQ(creator_->createPlugin("hps", nullptr, TensorRTPhase::kBUILD), nullptr);
}

// Keys [2, 3] (one absent) through the runtime capability's enqueue, with device buffers; rows as
// float32, or as float16 through the workspace (the values are exact in float16).
class TrtShellDevice : public TrtShell, public ::testing::WithParamInterface<bool> {};

TEST_P(TrtShellDevice, EnqueueOnTheDevice) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) GTEST_SKIP() << "no CUDA device";
  cudaSetDevice(0);
  const bool half = GetParam();
  std::unique_ptr<IPluginV3> plugin(create(kDim, half ? "float16" : nullptr));
  ASSERT_NE(plugin, nullptr);
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  const std::vector<std::int32_t> keys = {3, 1, 99, 40, 2, 3};
  DynamicPluginTensorDesc io[2] = {desc(DataType::kINT32, {2, 3}), desc(DataType::kFLOAT, {2, 3, kDim})};
  const std::size_t workspace_bytes = build->getWorkspaceSize(io, 1, io + 1, 1);
  EXPECT_EQ(workspace_bytes, half ? keys.size() * kDim * sizeof(float) : 0u);
  const std::size_t row_bytes = half ? sizeof(__half) : sizeof(float);
  void* d_keys = nullptr;
  void* d_rows = nullptr;
  void* d_workspace = nullptr;
  ASSERT_EQ(cudaMalloc(&d_keys, keys.size() * sizeof(std::int32_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_rows, keys.size() * kDim * row_bytes), cudaSuccess);
  if (workspace_bytes) {
    ASSERT_EQ(cudaMalloc(&d_workspace, workspace_bytes), cudaSuccess);
  }
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  cudaMemcpyAsync(d_keys, keys.data(), keys.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice, stream);
  PluginTensorDesc in{}, out{};
  in.type = DataType::kINT32;
  in.format = TensorFormat::kLINEAR;
  in.dims.nbDims = 2;
  in.dims.d[0] = 2;
  in.dims.d[1] = 3;
  out.type = half ? DataType::kHALF : DataType::kFLOAT;
  const void* inputs[] = {d_keys};
  void* outputs[] = {d_rows};
  ASSERT_EQ(runtime->enqueue(&in, &out, inputs, outputs, d_workspace, stream), 0);
  std::vector<float> got(keys.size() * kDim);
  if (half) {
    std::vector<__half> raw(got.size());
    cudaMemcpyAsync(raw.data(), d_rows, raw.size() * sizeof(__half), cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
    for (std::size_t i = 0; i < raw.size(); ++i) got[i] = __half2float(raw[i]);
  } else {
    cudaMemcpyAsync(got.data(), d_rows, got.size() * sizeof(float), cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
  }
  const std::vector<std::int64_t> stored = {1, 2, 3, 40};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::size_t row = 0;
    while (row < stored.size() && stored[row] != keys[i]) ++row;
    for (int d = 0; d < kDim; ++d) {
      const float want = row < stored.size() ? rows_[row * kDim + d] : 0.0f;
      EXPECT_EQ(got[i * kDim + d], want) << "key " << keys[i] << " d " << d;
    }
  }
  cudaFree(d_keys);
  cudaFree(d_rows);
  cudaFree(d_workspace);
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Rows, TrtShellDevice, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Float16" : "Float32"; });

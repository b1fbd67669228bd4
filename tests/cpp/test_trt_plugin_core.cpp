// The TensorRT-free part of the HPS_TRT plugin: creation fields, the serialized state and its
// version, shape rules, and the lookup through the C ABI against a real server (host memory).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "hps/model_io.hpp"
#include "hps_trt/error.hpp"
#include "hps_trt/fields.hpp"
#include "hps_trt/lookup.hpp"
#include "hps_trt/shapes.hpp"
#include "hps_trt/state.hpp"

namespace fs = std::filesystem;
using hps_trt::ElementType;
using hps_trt::FieldType;
using hps_trt::FieldView;
using hps_trt::OutputType;
using hps_trt::PluginConfig;
using hps_trt::PluginError;

namespace {

/// The fields of an HPS_TRT node, owned so a test can change one.
struct Fields {
  std::string config = "/models/ps.json";
  std::string model = "dlrm";
  std::int32_t table = 3;
  std::int32_t dim = 16;
  std::vector<FieldView> views() const {
    // As TensorRT's ONNX parser hands strings over: the characters plus a NUL.
    return {{"ps_config_file", config.c_str(), FieldType::kChar, static_cast<std::int32_t>(config.size() + 1)},
            {"model_name", model.c_str(), FieldType::kChar, static_cast<std::int32_t>(model.size() + 1)},
            {"table_id", &table, FieldType::kInt32, 1},
            {"emb_vec_size", &dim, FieldType::kInt32, 1}};
  }
};

PluginConfig parse(const std::vector<FieldView>& views) {
  return hps_trt::parse_fields(views.data(), static_cast<std::int32_t>(views.size()));
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const PluginError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ---- fields ------------------------------------------------------------------------------------

TEST(TrtFields, ParsesHugeCtrsFourFields) {
  const PluginConfig config = parse(Fields{}.views());
  EXPECT_EQ(config.ps_config_file, "/models/ps.json");
  EXPECT_EQ(config.model_name, "dlrm");
  EXPECT_EQ(config.table_id, 3);
  EXPECT_EQ(config.emb_vec_size, 16);
  EXPECT_EQ(config.output_type, OutputType::kFloat32);
}

TEST(TrtFields, StringsWithoutNulAndInt64sAndFloat16Output) {
  const std::string config = "ps.json", model = "m", dtype = "float16";
  const std::int64_t table = 0, dim = 8;
  const std::vector<FieldView> views = {
      {"emb_vec_dtype", dtype.data(), FieldType::kChar, static_cast<std::int32_t>(dtype.size())},
      {"model_name", model.data(), FieldType::kChar, 1},
      {"emb_vec_size", &dim, FieldType::kInt64, 1},
      {"ps_config_file", config.data(), FieldType::kChar, static_cast<std::int32_t>(config.size())},
      {"table_id", &table, FieldType::kInt64, 1}};
  const PluginConfig parsed = parse(views);
  EXPECT_EQ(parsed.ps_config_file, "ps.json");
  EXPECT_EQ(parsed.emb_vec_size, 8);
  EXPECT_EQ(parsed.output_type, OutputType::kFloat16);
}

TEST(TrtFields, BadFieldsAreRefusedByName) {
  Fields f;
  auto views = f.views();
  views.pop_back();
  EXPECT_NE(error_of([&] { parse(views); }).find("missing field emb_vec_size"), std::string::npos);
  views = f.views();
  views.erase(views.begin(), views.begin() + 2);
  EXPECT_NE(error_of([&] { parse(views); }).find("missing fields ps_config_file, model_name"), std::string::npos);

  views = f.views();
  views.push_back(views[2]);
  EXPECT_NE(error_of([&] { parse(views); }).find("field table_id is given twice"), std::string::npos);

  views = f.views();
  views[0].name = "ps_config";
  EXPECT_NE(error_of([&] { parse(views); }).find("unknown field ps_config"), std::string::npos);

  const float wrong = 3.0f;
  views = f.views();
  views[2] = {"table_id", &wrong, FieldType::kFloat32, 1};
  EXPECT_NE(error_of([&] { parse(views); }).find("field table_id must be INT32 (or INT64), got FLOAT32"),
            std::string::npos);

  views = f.views();
  views[1].type = FieldType::kInt32;
  EXPECT_NE(error_of([&] { parse(views); }).find("field model_name must be CHAR"), std::string::npos);

  views = f.views();
  views[1].length = 1;
  views[1].data = "";
  EXPECT_NE(error_of([&] { parse(views); }).find("field model_name is an empty string"), std::string::npos);

  f.dim = 0;
  EXPECT_NE(error_of([&] { parse(f.views()); }).find("emb_vec_size must be a row width > 0, got 0"),
            std::string::npos);
  f.dim = 16;
  f.table = -1;
  EXPECT_NE(error_of([&] { parse(f.views()); }).find("table_id must be a table index >= 0, got -1"),
            std::string::npos);

  const std::string bad = "bfloat16";
  Fields fresh;  // views point into it: it must outlive them (a temporary did not: ASan)
  views = fresh.views();
  views.push_back({"emb_vec_dtype", bad.data(), FieldType::kChar, static_cast<std::int32_t>(bad.size())});
  EXPECT_NE(error_of([&] { parse(views); }).find("emb_vec_dtype must be \"float32\" or \"float16\", got \"bfloat16\""),
            std::string::npos);
  EXPECT_NE(error_of([&] { hps_trt::parse_fields(nullptr, 2); }).find("no field collection"), std::string::npos);
}

TEST(TrtFields, CreationFieldsAdvertised) {
  const auto& fields = hps_trt::creation_fields();
  ASSERT_EQ(fields.size(), 5u);
  EXPECT_STREQ(fields[0].name, "ps_config_file");
  EXPECT_EQ(fields[2].type, FieldType::kInt32);
  EXPECT_STREQ(hps_trt::kPluginName, "HPS_TRT");
  EXPECT_STREQ(hps_trt::kPluginVersion, "1");
}

// ---- serialized state --------------------------------------------------------------------------

TEST(TrtState, RoundTrip) {
  PluginConfig config = parse(Fields{}.views());
  for (OutputType type : {OutputType::kFloat32, OutputType::kFloat16}) {
    config.output_type = type;
    const auto bytes = hps_trt::serialize(config);
    ASSERT_GE(bytes.size(), 16u);
    EXPECT_EQ(std::memcmp(bytes.data(), "HPST", 4), 0);
    EXPECT_EQ(bytes[4] | (bytes[5] << 8), hps_trt::kStateVersion);
    EXPECT_EQ(hps_trt::deserialize(bytes.data(), bytes.size()), config);
  }
}

TEST(TrtState, MalformedStatesAreRefused) {
  const auto good = hps_trt::serialize(parse(Fields{}.views()));
  auto bytes = good;
  EXPECT_NE(error_of([&] { hps_trt::deserialize(bytes.data(), 10); }).find("shorter than the 16-byte header"),
            std::string::npos);
  bytes[0] = 'X';
  EXPECT_NE(error_of([&] { hps_trt::deserialize(bytes.data(), bytes.size()); }).find("not an HPS_TRT plugin state"),
            std::string::npos);
  bytes = good;
  bytes[4] = 2;
  EXPECT_NE(error_of([&] { hps_trt::deserialize(bytes.data(), bytes.size()); })
                .find("plugin state version 2; this plugin reads version 1"),
            std::string::npos);
  bytes = good;
  EXPECT_NE(error_of([&] { hps_trt::deserialize(bytes.data(), bytes.size() - 1); })
                .find("payload bytes, " + std::to_string(good.size() - 17) + " follow it"),
            std::string::npos);
  bytes = good;
  bytes[20] ^= 0x40;  // inside ps_config_file
  EXPECT_NE(error_of([&] { hps_trt::deserialize(bytes.data(), bytes.size()); }).find("checksum mismatch"),
            std::string::npos);
  EXPECT_NE(error_of([&] { hps_trt::deserialize(nullptr, 5); }).find("no data"), std::string::npos);
}

TEST(TrtState, TruncatedPayloadNamesTheField) {
  // A consistent header over a payload cut inside model_name: the reader says where it ran out.
  PluginConfig config = parse(Fields{}.views());
  auto bytes = hps_trt::serialize(config);
  const std::size_t cut = 16 + 4 + config.ps_config_file.size() + 4 + 2;
  std::vector<std::uint8_t> payload(bytes.begin() + 16, bytes.begin() + static_cast<std::ptrdiff_t>(cut));
  std::uint32_t hash = 2166136261u;
  for (auto b : payload) hash = (hash ^ b) * 16777619u;
  std::vector<std::uint8_t> damaged(bytes.begin(), bytes.begin() + 8);
  for (std::uint32_t v : {static_cast<std::uint32_t>(payload.size()), hash}) {
    for (int i = 0; i < 4; ++i) damaged.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  damaged.insert(damaged.end(), payload.begin(), payload.end());
  const std::string message = error_of([&] { hps_trt::deserialize(damaged.data(), damaged.size()); });
  EXPECT_NE(message.find("model_name at byte"), std::string::npos) << message;
  EXPECT_NE(message.find("2 remain"), std::string::npos) << message;
}

// ---- shapes ------------------------------------------------------------------------------------

TEST(TrtShapes, KeysOfAnyRankGainTheRowDimension) {
  const std::int64_t dims[] = {-1, 26, 3};
  EXPECT_EQ(hps_trt::output_dims(dims, 3, 16), (std::vector<std::int64_t>{-1, 26, 3, 16}));
  EXPECT_EQ(hps_trt::output_dims(dims, 0, 16), (std::vector<std::int64_t>{16}));
  const std::int64_t deep[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(hps_trt::output_dims(deep, 7, 4).size(), 8u);
  EXPECT_NE(error_of([&] { hps_trt::output_dims(deep, 8, 4); }).find("rank 9, and TensorRT allows 8 at most"),
            std::string::npos);
  EXPECT_EQ(hps_trt::key_count(dims + 1, 2), 78u);
  EXPECT_NE(error_of([&] { hps_trt::key_count(dims, 3); }).find("unknown or negative"), std::string::npos);
}

TEST(TrtShapes, TypesAndWorkspace) {
  PluginConfig config = parse(Fields{}.views());
  EXPECT_TRUE(hps_trt::supports(0, ElementType::kInt32, true, config));
  EXPECT_TRUE(hps_trt::supports(0, ElementType::kInt64, true, config));
  EXPECT_FALSE(hps_trt::supports(0, ElementType::kFloat32, true, config));
  EXPECT_FALSE(hps_trt::supports(0, ElementType::kInt32, false, config));
  EXPECT_TRUE(hps_trt::supports(1, ElementType::kFloat32, true, config));
  EXPECT_FALSE(hps_trt::supports(1, ElementType::kFloat16, true, config));
  EXPECT_EQ(hps_trt::workspace_bytes(100, config), 0u);
  config.output_type = OutputType::kFloat16;
  EXPECT_TRUE(hps_trt::supports(1, ElementType::kFloat16, true, config));
  EXPECT_EQ(hps_trt::workspace_bytes(100, config), 100u * 16 * 4);
}

TEST(TrtHalf, RoundsToNearestEven) {
  const float in[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65520.0f, 1e-8f, 6.1035156e-05f, 5.9604645e-08f,
                      1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, INFINITY, NAN};
  const std::uint16_t expected[] = {0x0000, 0x8000, 0x3c00, 0xc100, 0x7bff, 0x7c00, 0x0000, 0x0400, 0x0001,
                                    0x3c00, 0x3c02, 0x7c00, 0x7e00};
  std::uint16_t out[13];
  hps_trt::to_half(in, out, 13);
  for (int i = 0; i < 13; ++i) EXPECT_EQ(out[i], expected[i]) << "value " << in[i];
}

// ---- the lookup through the C ABI, host memory -------------------------------------------------------

class TrtLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("hps_trt_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(dir_);
    keys_ = {5, 7, 11, 1'000'003};
    rows_.resize(keys_.size() * kDim);
    for (std::size_t i = 0; i < rows_.size(); ++i) rows_[i] = 0.25f * static_cast<float>(i) - 3.0f;
    hps::write_sparse_model((dir_ / "t").string(), keys_.data(), rows_.data(), keys_.size(), kDim);
    std::ofstream(dir_ / "ps.json") << R"({"supportlonglong": true, "models": [{"model": "m", "sparse_files": [")"
                                    << (dir_ / "t").string() << R"("], "embedding_vecsize_per_table": [4],
                                    "default_value_for_each_table": [-1.0]}]})";
  }
  void TearDown() override { fs::remove_all(dir_); }

  PluginConfig config(std::int32_t table = 0, std::int32_t dim = kDim) const {
    return PluginConfig{(dir_ / "ps.json").string(), "m", table, dim, OutputType::kFloat32};
  }

  std::vector<float> expected(const std::vector<std::int64_t>& query) const {
    std::vector<float> out;
    for (std::int64_t k : query) {
      std::size_t i = 0;
      while (i < keys_.size() && keys_[i] != k) ++i;
      for (std::size_t d = 0; d < kDim; ++d) out.push_back(i < keys_.size() ? rows_[i * kDim + d] : -1.0f);
    }
    return out;
  }

  static constexpr std::size_t kDim = 4;
  fs::path dir_;
  std::vector<std::int64_t> keys_;
  std::vector<float> rows_;
};

TEST_F(TrtLookup, Int64AndInt32KeysOnTheHost) {
  const hps_trt::TableLookup lookup(config());
  // keys [2, 3] as a rank-2 tensor, one absent key (the default row).
  const std::vector<std::int64_t> query = {7, 5, 1'000'003, 11, 42, 7};
  std::vector<float> out(query.size() * kDim, 99.0f);
  lookup.enqueue(query.data(), ElementType::kInt64, query.size(), out.data(), nullptr, HPS_HOST, nullptr);
  EXPECT_EQ(out, expected(query));

  const std::vector<std::int32_t> narrow = {11, 5, 6};
  std::vector<float> out32(narrow.size() * kDim);
  lookup.enqueue(narrow.data(), ElementType::kInt32, narrow.size(), out32.data(), nullptr, HPS_HOST, nullptr);
  EXPECT_EQ(out32, expected({11, 5, 6}));

  // A copy shares the server (the registry's reference count) and outlives the original.
  auto copy = std::make_unique<hps_trt::TableLookup>(lookup);
  std::vector<float> again(narrow.size() * kDim);
  copy->enqueue(narrow.data(), ElementType::kInt32, narrow.size(), again.data(), nullptr, HPS_HOST, nullptr);
  EXPECT_EQ(again, out32);
  EXPECT_NE(error_of([&] { lookup.enqueue(narrow.data(), ElementType::kFloat32, 3, out32.data(), nullptr, HPS_HOST,
                                          nullptr); }).find("keys must be int32 or int64"),
            std::string::npos);
}

TEST_F(TrtLookup, Float16Output) {
  PluginConfig half = config();
  half.output_type = OutputType::kFloat16;
  const hps_trt::TableLookup lookup(half);
  const std::vector<std::int64_t> query = {11, 5, 3};
  std::vector<float> workspace(hps_trt::workspace_bytes(query.size(), half) / sizeof(float));
  std::vector<std::uint16_t> out(query.size() * kDim);
  lookup.enqueue(query.data(), ElementType::kInt64, query.size(), out.data(), workspace.data(), HPS_HOST, nullptr);
  const auto want = expected(query);
  std::vector<std::uint16_t> want_half(want.size());
  hps_trt::to_half(want.data(), want_half.data(), want.size());
  EXPECT_EQ(out, want_half);
  EXPECT_NE(error_of([&] { lookup.enqueue(query.data(), ElementType::kInt64, 3, out.data(), nullptr, HPS_HOST,
                                          nullptr); }).find("needs a workspace"),
            std::string::npos);
}

TEST_F(TrtLookup, ConfigTableAndWidthAreChecked) {
  EXPECT_NE(error_of([&] { hps_trt::TableLookup(config(0, 8)); })
                .find("emb_vec_size 8 does not match table 0 of model m, whose rows have 4 floats"),
            std::string::npos);
  EXPECT_NE(error_of([&] { hps_trt::TableLookup(config(1)); }).find("no table 1 in model m"), std::string::npos);
  PluginConfig other = config();
  other.model_name = "other";
  EXPECT_NE(error_of([&] { hps_trt::TableLookup{other}; }).find("HPS_ERROR_NOT_FOUND"), std::string::npos);
  PluginConfig missing = config();
  missing.ps_config_file = (dir_ / "nowhere.json").string();
  const std::string message = error_of([&] { hps_trt::TableLookup{missing}; });
  EXPECT_NE(message.find("cannot serve ps_config_file"), std::string::npos) << message;
  EXPECT_NE(message.find("nowhere.json"), std::string::npos) << message;
}

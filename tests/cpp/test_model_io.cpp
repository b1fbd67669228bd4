#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "hps/error.hpp"
#include "hps/model_io.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;

using hps_test::TempDir;

namespace {

void truncate_file(const fs::path& path, std::uintmax_t bytes) { fs::resize_file(path, bytes); }

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const hps::IOError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ModelIo, WriteThenReadRoundTrips) {
  TempDir dir;
  const std::size_t n = 1000, dim = 7;
  std::vector<std::int64_t> keys(n), meta(n);
  std::vector<float> rows(n * dim);
  for (std::size_t i = 0; i < n; ++i) {
    keys[i] = static_cast<std::int64_t>(i * 2654435761ULL) - 500;
    meta[i] = static_cast<std::int64_t>(n - i);
    for (std::size_t j = 0; j < dim; ++j) rows[i * dim + j] = static_cast<float>(i) + 0.125f * static_cast<float>(j);
  }
  const auto folder = (dir.path() / "t0").string();
  hps::write_sparse_model(folder, keys.data(), rows.data(), n, dim, meta.data());
  EXPECT_EQ(fs::file_size(fs::path(folder) / "key"), n * 8);
  EXPECT_EQ(fs::file_size(fs::path(folder) / "emb_vector"), n * dim * 4);

  const auto info = hps::inspect_sparse_model(folder);
  EXPECT_EQ(info.rows, n);
  EXPECT_EQ(info.dim, dim);  // inferred from the sizes
  EXPECT_TRUE(info.has_meta);

  hps::SparseModelReader reader(folder, dim);
  std::vector<std::int64_t> got_keys, got_meta;
  std::vector<float> got_rows;
  std::size_t chunks = 0;
  reader.for_each_chunk(64, [&](const std::int64_t* k, const float* r, const std::int64_t* m, std::size_t c) {
    ASSERT_LE(c, 64u);
    ASSERT_NE(m, nullptr);
    got_keys.insert(got_keys.end(), k, k + c);
    got_rows.insert(got_rows.end(), r, r + c * dim);
    got_meta.insert(got_meta.end(), m, m + c);
    ++chunks;
  });
  EXPECT_EQ(chunks, (n + 63) / 64);
  EXPECT_EQ(got_keys, keys);
  EXPECT_EQ(got_rows, rows);
  EXPECT_EQ(got_meta, meta);
}

TEST(ModelIo, TruncatedVectorsNameFileAndByteCounts) {
  TempDir dir;
  std::vector<std::int64_t> keys = {1, 2, 3};
  std::vector<float> rows(3 * 4, 1.0f);
  const auto folder = (dir.path() / "t").string();
  hps::write_sparse_model(folder, keys.data(), rows.data(), 3, 4);
  truncate_file(fs::path(folder) / "emb_vector", 40);
  const std::string msg = message_of([&] { hps::inspect_sparse_model(folder, 4); });
  EXPECT_NE(msg.find("emb_vector"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 48 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found 40 bytes"), std::string::npos) << msg;
}

TEST(ModelIo, WrongDimIsAnError) {
  TempDir dir;
  std::vector<std::int64_t> keys = {1, 2};
  std::vector<float> rows(2 * 8, 1.0f);
  const auto folder = (dir.path() / "t").string();
  hps::write_sparse_model(folder, keys.data(), rows.data(), 2, 8);
  const std::string msg = message_of([&] { hps::SparseModelReader reader(folder, 16); });
  EXPECT_NE(msg.find("expected 128 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found 64 bytes"), std::string::npos) << msg;
}

TEST(ModelIo, MissingAndMalformedFiles) {
  TempDir dir;
  EXPECT_NE(message_of([&] { hps::inspect_sparse_model((dir.path() / "nope").string()); }).find("does not exist"),
            std::string::npos);
  const auto folder = dir.path() / "t";
  fs::create_directories(folder);
  EXPECT_NE(message_of([&] { hps::inspect_sparse_model(folder.string()); }).find("key: missing"), std::string::npos);
  { std::ofstream(folder / "key", std::ios::binary).write("12345", 5); }
  { std::ofstream(folder / "emb_vector", std::ios::binary).write("1234", 4); }
  EXPECT_NE(message_of([&] { hps::inspect_sparse_model(folder.string()); }).find("multiple of 8"), std::string::npos);
  fs::resize_file(folder / "key", 16);
  fs::resize_file(folder / "emb_vector", 8);
  { std::ofstream(folder / "meta", std::ios::binary).write("1234", 4); }
  EXPECT_NE(message_of([&] { hps::inspect_sparse_model(folder.string(), 1); }).find("meta"), std::string::npos);
}

TEST(ModelIo, EmptyTableIsValidWithAGivenDim) {
  TempDir dir;
  const auto folder = (dir.path() / "t").string();
  hps::write_sparse_model(folder, nullptr, nullptr, 0, 4);
  EXPECT_EQ(hps::inspect_sparse_model(folder, 4).rows, 0u);
  EXPECT_THROW(hps::inspect_sparse_model(folder, 0), hps::IOError);  // nothing to infer the dim from
}

TEST(ModelIo, RewritingDropsAStaleMetaFile) {
  TempDir dir;
  const auto folder = (dir.path() / "t").string();
  std::vector<std::int64_t> keys = {1, 2}, meta = {5, 6};
  std::vector<float> rows = {1, 2};
  hps::write_sparse_model(folder, keys.data(), rows.data(), 2, 1, meta.data());
  hps::write_sparse_model(folder, keys.data(), rows.data(), 1, 1);
  EXPECT_FALSE(hps::inspect_sparse_model(folder, 1).has_meta);
}

// libFuzzer target: the table-file reader (HugeCTR's sparse-model folder: key, emb_vector, meta)
// on arbitrary file contents, and a server loading such a folder.
//
// Input: u8 flags | u8 dim | u16 key bytes | u16 emb_vector bytes (little-endian) | key file |
// emb_vector file | meta file (the rest; written when flags & 1). flags & 2: pass `dim` to the
// reader (0 = infer it from the sizes), else infer it. flags & 4: also load the folder into a
// server (hash map tier) and look every key up.
//
// Properties: inspect_sparse_model and the reader either throw hps::IOError or give back exactly
// the bytes of the files, chunk by chunk; a server built on the folder either throws an hps::Error
// or answers every key with the row of its last occurrence, and other keys with the default row.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "fuzz_support.hpp"
#include "hps/config.hpp"
#include "hps/error.hpp"
#include "hps/model_io.hpp"
#include "hps/parameter_server.hpp"

namespace {

constexpr float kDefault = 0.5f;

struct Files {
  const std::uint8_t* key;
  std::size_t key_size;
  const std::uint8_t* vec;
  std::size_t vec_size;
  const std::uint8_t* meta;
  std::size_t meta_size;
};

void check_reader(const std::string& folder, std::size_t dim, std::size_t chunk_rows, const Files& files,
                  bool has_meta) {
  hps::SparseModelReader reader(folder, dim);
  const std::size_t rows = reader.rows();
  if (rows * 8 != files.key_size || rows * reader.dim() * 4 != files.vec_size ||
      reader.info().has_meta != has_meta || (has_meta && files.meta_size != files.key_size)) {
    hps_fuzz::fail("the reader accepted files whose sizes do not agree: " + std::to_string(files.key_size) + " key, " +
                   std::to_string(files.vec_size) + " emb_vector bytes, dim " + std::to_string(reader.dim()));
  }
  std::size_t seen = 0;
  reader.for_each_chunk(chunk_rows, [&](const std::int64_t* keys, const float* vectors, const std::int64_t* meta,
                                        std::size_t n) {
    if (n == 0 || n > chunk_rows || seen + n > rows) hps_fuzz::fail("a chunk of " + std::to_string(n) + " rows");
    const std::size_t row_bytes = reader.dim() * 4;
    if (std::memcmp(keys, files.key + seen * 8, n * 8) != 0 ||
        std::memcmp(vectors, files.vec + seen * row_bytes, n * row_bytes) != 0 ||
        (has_meta != (meta != nullptr)) || (meta && std::memcmp(meta, files.meta + seen * 8, n * 8) != 0)) {
      hps_fuzz::fail("the reader's chunk at row " + std::to_string(seen) + " differs from the files");
    }
    seen += n;
  });
  if (seen != rows) hps_fuzz::fail("the chunks covered " + std::to_string(seen) + " of " + std::to_string(rows) + " rows");
}

void check_server(const std::string& folder, std::size_t dim, const Files& files) {
  const std::string json = R"({"supportlonglong": true, "volatile_db": {"type": "hash_map", "num_partitions": 2},
    "persistent_db": {"type": "disabled"},
    "models": [{"model": "m", "sparse_files": [")" + folder + R"("], "embedding_vecsize_per_table": [)" +
                           std::to_string(dim) + R"(], "default_value_for_each_table": [0.5], "gpucache": false}]})";
  hps::ServerOptions options;
  options.lookup_threads = 1;
  std::unique_ptr<hps::ParameterServer> server;
  try {
    server = std::make_unique<hps::ParameterServer>(hps::parse_config(json), nullptr, options);
  } catch (const hps::Error&) {
    return;
  }
  const std::size_t rows = files.key_size / 8;
  std::unordered_map<std::int64_t, std::size_t> last;  // key -> row of its last occurrence
  std::vector<std::int64_t> keys(rows);
  if (rows > 0) std::memcpy(keys.data(), files.key, rows * 8);
  for (std::size_t i = 0; i < rows; ++i) last[keys[i]] = i;
  std::int64_t absent = 0;
  while (last.count(absent)) ++absent;
  keys.push_back(absent);
  std::vector<float> out(keys.size() * dim, -1.0f);
  const hps::TableRef table = server->find_table("m", 0);
  server->lookup(table, keys.data(), hps::KeyDtype::kInt64, keys.size(), out.data());
  for (std::size_t i = 0; i < rows; ++i) {
    if (std::memcmp(&out[i * dim], files.vec + last[keys[i]] * dim * 4, dim * 4) != 0) {
      hps_fuzz::fail("key " + std::to_string(keys[i]) + " at position " + std::to_string(i) +
                     " is not answered with the row of its last occurrence");
    }
  }
  for (std::size_t j = 0; j < dim; ++j) {
    if (out[rows * dim + j] != kDefault) hps_fuzz::fail("an absent key is not answered with the default row");
  }
}

std::uint16_t u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 6) return 0;
  const std::uint8_t flags = data[0];
  const std::size_t dim_field = data[1];
  Files files{};
  const std::uint8_t* p = data + 6;
  std::size_t left = size - 6;
  files.key = p;
  files.key_size = std::min<std::size_t>(u16(data + 2), left);
  p += files.key_size;
  left -= files.key_size;
  files.vec = p;
  files.vec_size = std::min<std::size_t>(u16(data + 4), left);
  p += files.vec_size;
  left -= files.vec_size;
  files.meta = p;
  files.meta_size = left;
  const bool has_meta = (flags & 1) != 0;

  static const std::string folder = (hps_fuzz::scratch_folder() / "table").string();
  std::filesystem::create_directories(folder);
  hps_fuzz::write_file(folder + "/key", files.key, files.key_size);
  hps_fuzz::write_file(folder + "/emb_vector", files.vec, files.vec_size);
  std::error_code ignored;
  if (has_meta) {
    hps_fuzz::write_file(folder + "/meta", files.meta, files.meta_size);
  } else {
    std::filesystem::remove(folder + "/meta", ignored);
  }

  const std::size_t dim = (flags & 2) ? dim_field : 0;
  std::size_t found_dim = 0;
  try {
    found_dim = hps::inspect_sparse_model(folder, dim).dim;
    check_reader(folder, dim, 1 + (flags >> 5), files, has_meta);
  } catch (const hps::IOError&) {
    return 0;
  }
  if (flags & 4) check_server(folder, found_dim, files);
  return 0;
}

// HugeCTR's sparse-model folder format: one folder per embedding table holding
//   key        int64 little-endian, one per row                 (8 * rows bytes)
//   emb_vector fp32 little-endian, row-major, row i is key i    (4 * dim * rows bytes)
//   meta       optional, int64 per row (e.g. a frequency)        (8 * rows bytes)
// The reader checks every size against the others and against the configured dim, and reads in
// chunks, so loading a table never holds more than one chunk of it beyond its destination.
// Duplicate keys in one folder: the last occurrence wins (rows are applied in file order).
//
// Ownership: readers own their file handles; pointers passed in are borrowed for the call.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace hps HPS_EXPORT {

struct SparseModelInfo {
  std::string folder;
  std::size_t rows = 0;
  std::size_t dim = 0;  ///< from the config, or inferred from the file sizes
  bool has_meta = false;
  std::uint64_t key_bytes = 0;
  std::uint64_t vector_bytes = 0;
  std::uint64_t meta_bytes = 0;
  /// Identifies this content for "already loaded" checks: folder, sizes and modification times.
  std::string signature;
};

/// Checks the folder and returns what it holds. `dim` 0 infers the dim from the file sizes.
/// Throws IOError naming the file and the expected and found byte counts on any mismatch.
SparseModelInfo inspect_sparse_model(const std::string& folder, std::size_t dim = 0);

class SparseModelReader {
 public:
  using ChunkFn = std::function<void(const std::int64_t* keys, const float* rows, const std::int64_t* meta,
                                     std::size_t n)>;

  SparseModelReader(const std::string& folder, std::size_t dim);
  ~SparseModelReader();
  SparseModelReader(const SparseModelReader&) = delete;
  SparseModelReader& operator=(const SparseModelReader&) = delete;

  const SparseModelInfo& info() const { return info_; }
  std::size_t rows() const { return info_.rows; }
  std::size_t dim() const { return info_.dim; }

  /// Reads rows [first, first + count) into the given buffers (meta may be null).
  void read(std::size_t first, std::size_t count, std::int64_t* keys, float* rows, std::int64_t* meta) const;

  /// Calls fn over consecutive chunks of at most `chunk_rows` rows, in file order.
  void for_each_chunk(std::size_t chunk_rows, const ChunkFn& fn) const;

  using KeyChunkFn = std::function<void(const std::int64_t* keys, std::size_t first, std::size_t n)>;
  /// Calls fn over the key file alone, in file order, 2^20 keys (8 MiB) at a time; `first` is the
  /// file position of keys[0].
  void for_each_key_chunk(const KeyChunkFn& fn) const;

 private:
  SparseModelInfo info_;
  int key_fd_ = -1;
  int vector_fd_ = -1;
  int meta_fd_ = -1;
};

/// Reads the folder's key file (only, in chunks) and throws InvalidArgument naming the file and the
/// position of the first key a model of `key64` width cannot take; nothing to read when key64.
/// The server runs it before it empties a tier to load the files, so bad keys leave it as it was.
void check_sparse_model_keys(const std::string& folder, std::size_t dim, bool key64);

/// Writes a table folder (creating it). Files are written under temporary names and renamed, so
/// a reader never sees a half-written table. Throws IOError on failure.
void write_sparse_model(const std::string& folder, const std::int64_t* keys, const float* rows, std::size_t n,
                        std::size_t dim, const std::int64_t* meta = nullptr);

}  // namespace hps

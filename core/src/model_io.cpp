#include "hps/model_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "hps/error.hpp"
#include "hps/keys.hpp"

namespace hps {

static_assert(std::endian::native == std::endian::little,
              "table files are little-endian; a big-endian host needs byte swapping here");

namespace fs = std::filesystem;

namespace {

struct FileStat {
  bool exists = false;
  std::uint64_t bytes = 0;
  std::int64_t mtime_ns = 0;
};

FileStat stat_file(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, static_cast<std::uint64_t>(st.st_size),
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

std::string describe_bytes(std::uint64_t bytes) { return std::to_string(bytes) + " bytes"; }

int open_read(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  HPS_EXPECTS(fd >= 0, IOError, path.string(), ": cannot open: ", std::strerror(errno));
  return fd;
}

// Reads exactly `bytes` at `offset`, looping over short reads.
void pread_all(int fd, void* dst, std::size_t bytes, std::uint64_t offset, const std::string& what) {
  auto* out = static_cast<char*>(dst);
  while (bytes > 0) {
    const ssize_t got = ::pread(fd, out, bytes, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    HPS_EXPECTS(got > 0, IOError, what, ": read failed at byte ", offset, ": ",
                got == 0 ? "unexpected end of file" : std::strerror(errno));
    out += got;
    bytes -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
}

void write_all(const fs::path& path, const void* data, std::uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  HPS_EXPECTS(fd >= 0, IOError, path.string(), ": cannot create: ", std::strerror(errno));
  const auto* in = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t put = ::write(fd, in, bytes);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      const int err = errno;
      ::close(fd);
      HPS_FAIL(IOError, path.string(), ": write failed: ", std::strerror(err));
    }
    in += put;
    bytes -= static_cast<std::uint64_t>(put);
  }
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  HPS_EXPECTS(synced, IOError, path.string(), ": fsync failed: ", std::strerror(err));
}

}  // namespace

SparseModelInfo inspect_sparse_model(const std::string& folder, std::size_t dim) {
  const fs::path dir(folder);
  std::error_code ignored;
  HPS_EXPECTS(!fs::exists(dir, ignored) || fs::is_directory(dir, ignored), IOError, folder,
              ": is a file, not a table folder (a table is a folder holding 'key' and 'emb_vector' files; "
              "give the folder, or write one from arrays with hps convert)");
  HPS_EXPECTS(fs::is_directory(dir), IOError, folder, ": table folder does not exist (expected a folder holding ",
              "'key' and 'emb_vector' files)");
  const FileStat key = stat_file(dir / "key");
  const FileStat vec = stat_file(dir / "emb_vector");
  const FileStat meta = stat_file(dir / "meta");
  HPS_EXPECTS(key.exists, IOError, (dir / "key").string(), ": missing (every table folder needs a 'key' file)");
  HPS_EXPECTS(vec.exists, IOError, (dir / "emb_vector").string(),
              ": missing (every table folder needs an 'emb_vector' file)");
  HPS_EXPECTS(key.bytes % 8 == 0, IOError, (dir / "key").string(), ": ", describe_bytes(key.bytes),
              " is not a whole number of int64 keys (expected a multiple of 8)");

  SparseModelInfo info;
  info.folder = fs::absolute(dir).lexically_normal().string();
  info.rows = key.bytes / 8;
  info.key_bytes = key.bytes;
  info.vector_bytes = vec.bytes;
  info.has_meta = meta.exists;
  info.meta_bytes = meta.bytes;

  if (dim == 0) {
    HPS_EXPECTS(info.rows > 0, IOError, (dir / "key").string(), ": empty, so the row size cannot be inferred");
    HPS_EXPECTS(vec.bytes % (info.rows * 4) == 0, IOError, (dir / "emb_vector").string(), ": ",
                describe_bytes(vec.bytes), " is not ", info.rows, " rows of whole fp32 vectors");
    dim = static_cast<std::size_t>(vec.bytes / (info.rows * 4));
    HPS_EXPECTS(dim > 0, IOError, (dir / "emb_vector").string(), ": empty although 'key' holds ", info.rows, " keys");
  }
  info.dim = dim;
  std::uint64_t expected = 0;
  HPS_EXPECTS(!__builtin_mul_overflow(std::uint64_t{info.rows}, std::uint64_t{dim} * 4, &expected) &&
                  dim <= (std::uint64_t{1} << 61),
              InvalidArgument, folder, ": a dim of ", dim, " values per row is impossible (", info.rows,
              " rows of it would take more than 2^64 bytes)");
  HPS_EXPECTS(vec.bytes == expected, IOError, (dir / "emb_vector").string(), ": expected ", describe_bytes(expected),
              " (", info.rows, " keys x ", dim, " floats x 4 bytes), found ", describe_bytes(vec.bytes),
              vec.bytes < expected ? " (truncated?)" : "");
  if (meta.exists) {
    HPS_EXPECTS(meta.bytes == key.bytes, IOError, (dir / "meta").string(), ": expected ",
                describe_bytes(key.bytes), " (one int64 per key), found ", describe_bytes(meta.bytes));
  }
  info.signature = info.folder + "|rows=" + std::to_string(info.rows) + "|dim=" + std::to_string(dim) +
                   "|key=" + std::to_string(key.mtime_ns) + "|vec=" + std::to_string(vec.mtime_ns);
  return info;
}

SparseModelReader::SparseModelReader(const std::string& folder, std::size_t dim)
    : info_(inspect_sparse_model(folder, dim)) {
  const fs::path dir(info_.folder);
  key_fd_ = open_read(dir / "key");
  try {
    vector_fd_ = open_read(dir / "emb_vector");
    if (info_.has_meta) meta_fd_ = open_read(dir / "meta");
  } catch (...) {
    if (key_fd_ >= 0) ::close(key_fd_);
    if (vector_fd_ >= 0) ::close(vector_fd_);
    throw;
  }
}

SparseModelReader::~SparseModelReader() {
  for (int fd : {key_fd_, vector_fd_, meta_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

void SparseModelReader::read(std::size_t first, std::size_t count, std::int64_t* keys, float* rows,
                             std::int64_t* meta) const {
  HPS_EXPECTS(first + count <= info_.rows, InvalidArgument, info_.folder, ": rows [", first, ", ", first + count,
              ") are past the end (", info_.rows, " rows)");
  if (count == 0) return;
  const std::string dir = info_.folder + "/";
  if (keys) pread_all(key_fd_, keys, count * 8, std::uint64_t{first} * 8, dir + "key");
  if (rows) {
    const std::uint64_t row_bytes = std::uint64_t{info_.dim} * 4;
    pread_all(vector_fd_, rows, count * row_bytes, first * row_bytes, dir + "emb_vector");
  }
  if (meta) {
    HPS_EXPECTS(meta_fd_ >= 0, InvalidArgument, info_.folder, ": has no 'meta' file");
    pread_all(meta_fd_, meta, count * 8, std::uint64_t{first} * 8, dir + "meta");
  }
}

void SparseModelReader::for_each_chunk(std::size_t chunk_rows, const ChunkFn& fn) const {
  HPS_EXPECTS(chunk_rows > 0, InvalidArgument, "chunk_rows must be positive");
  const std::size_t chunk = std::min(chunk_rows, std::max<std::size_t>(info_.rows, 1));
  std::vector<std::int64_t> keys(chunk);
  std::vector<float> rows(chunk * info_.dim);
  std::vector<std::int64_t> meta(info_.has_meta ? chunk : 0);
  for (std::size_t first = 0; first < info_.rows; first += chunk) {
    const std::size_t n = std::min(chunk, info_.rows - first);
    read(first, n, keys.data(), rows.data(), info_.has_meta ? meta.data() : nullptr);
    fn(keys.data(), rows.data(), info_.has_meta ? meta.data() : nullptr, n);
  }
}

void SparseModelReader::for_each_key_chunk(const KeyChunkFn& fn) const {
  constexpr std::size_t kChunkKeys = std::size_t{1} << 20;
  std::vector<std::int64_t> keys(std::min(kChunkKeys, info_.rows));
  for (std::size_t first = 0; first < info_.rows; first += kChunkKeys) {
    const std::size_t n = std::min(kChunkKeys, info_.rows - first);
    read(first, n, keys.data(), nullptr, nullptr);
    fn(keys.data(), first, n);
  }
}

void check_sparse_model_keys(const std::string& folder, std::size_t dim, bool key64) {
  if (key64) return;
  const SparseModelReader reader(folder, dim);
  const std::string file = reader.info().folder + "/key";
  reader.for_each_key_chunk([&](const std::int64_t* keys, std::size_t first, std::size_t n) {
    check_int64_keys(keys, n, key64, first, file);
  });
}

void write_sparse_model(const std::string& folder, const std::int64_t* keys, const float* rows, std::size_t n,
                        std::size_t dim, const std::int64_t* meta) {
  HPS_EXPECTS(dim > 0, InvalidArgument, folder, ": dim must be positive");
  const fs::path dir(folder);
  std::error_code ec;
  fs::create_directories(dir, ec);
  HPS_EXPECTS(!ec, IOError, folder, ": cannot create folder: ", ec.message());
  // Write every file under a temporary name first, then rename: a reader sees the old table or
  // the new one, never a mix of sizes.
  struct Part {
    const char* name;
    const void* data;
    std::uint64_t bytes;
  };
  std::vector<Part> parts = {{"key", keys, std::uint64_t{n} * 8},
                             {"emb_vector", rows, std::uint64_t{n} * dim * 4}};
  if (meta) parts.push_back({"meta", meta, std::uint64_t{n} * 8});
  for (const auto& part : parts) write_all(dir / (std::string(part.name) + ".tmp"), part.data, part.bytes);
  for (const auto& part : parts) {
    fs::rename(dir / (std::string(part.name) + ".tmp"), dir / part.name, ec);
    HPS_EXPECTS(!ec, IOError, (dir / part.name).string(), ": cannot rename into place: ", ec.message());
  }
  if (!meta) fs::remove(dir / "meta", ec);  // a stale meta file would no longer match the keys
}

}  // namespace hps

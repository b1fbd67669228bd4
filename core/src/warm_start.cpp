#include "warm_start.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <optional>
#include <vector>

#include "hps/error.hpp"
#include "hps/keys.hpp"
#include "hps/model_io.hpp"

namespace hps {

namespace {

/// File positions of the `capacity` rows with the largest meta values, in file order.
std::vector<std::size_t> most_frequent_positions(const SparseModelReader& reader, std::size_t capacity) {
  std::vector<std::int64_t> meta(reader.rows());
  reader.read(0, reader.rows(), nullptr, nullptr, meta.data());
  std::vector<std::size_t> order(reader.rows());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return meta[a] > meta[b]; });
  order.resize(capacity);
  std::sort(order.begin(), order.end());
  return order;
}

/// The files' most frequent keys, canonical, each once, sorted.
std::vector<std::int64_t> most_frequent_keys(const SparseModelReader& reader, bool key64, std::size_t capacity) {
  const std::vector<std::size_t> chosen = most_frequent_positions(reader, capacity);
  const std::string key_file = reader.info().folder + "/key";
  // The chosen positions are in file order: one pass over the key file picks their keys.
  std::vector<std::int64_t> keys;
  keys.reserve(chosen.size());
  std::size_t next = 0;
  reader.for_each_key_chunk([&](const std::int64_t* file_keys, std::size_t first, std::size_t n) {
    for (; next < chosen.size() && chosen[next] < first + n; ++next) keys.push_back(file_keys[chosen[next] - first]);
  });
  canonicalize_keys(keys.data(), KeyDtype::kInt64, keys.size(), key64, keys.data(), key_file);
  std::sort(keys.begin(), keys.end());  // a key the files repeat takes one slot
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

/// The tier's rows of `keys` (sorted, distinct; compacted in place chunk by chunk to the keys found);
/// keys the tier no longer holds are left out.
std::size_t rows_of(Tier& source, std::vector<std::int64_t>& keys, std::size_t chunk_rows, const WarmRowSink& take) {
  const std::size_t dim = source.dim();
  std::vector<float> rows(chunk_rows * dim);
  std::vector<std::uint8_t> found(chunk_rows);
  std::size_t given = 0;
  for (std::size_t first = 0; first < keys.size(); first += chunk_rows) {
    const std::size_t n = std::min(chunk_rows, keys.size() - first);
    std::int64_t* batch = keys.data() + first;
    source.find(batch, n, rows.data(), found.data());
    std::size_t kept = 0;  // compact the rows found to the front
    for (std::size_t i = 0; i < n; ++i) {
      if (!found[i]) continue;
      if (kept != i) {
        batch[kept] = batch[i];
        std::memcpy(&rows[kept * dim], &rows[i * dim], dim * sizeof(float));
      }
      ++kept;
    }
    if (kept > 0) take(batch, rows.data(), kept);
    given += kept;
  }
  return given;
}

}  // namespace

WarmStart warm_start_rows(Tier& source, const std::string& sparse_file, bool key64, std::size_t capacity,
                          bool whole_table, std::size_t chunk_rows, const WarmRowSink& take) {
  WarmStart result;
  std::error_code ignored;
  if (!whole_table && capacity > 0 && !sparse_file.empty() &&
      std::filesystem::exists(std::filesystem::path(sparse_file) / "meta", ignored)) {
    // The files only rank keys: files that cannot be read (a server that does not load them, e.g.
    // over a read-only store, may point at a stale or damaged folder) leave the tier's own order,
    // and the caller is told why. The rows still come from the tier, whose errors are not caught.
    std::optional<std::vector<std::int64_t>> ranked;  // none: every row fits, or the files failed
    try {
      const SparseModelReader reader(sparse_file, source.dim());
      if (reader.rows() > capacity) ranked = most_frequent_keys(reader, key64, capacity);
    } catch (const Error& e) {
      result.unranked_because = e.what();
    }
    if (ranked) {
      result.given = rows_of(source, *ranked, chunk_rows, take);
      return result;
    }
  }
  // The tier's own order. Tier::for_each has no early stop: a scan that has given enough rows is
  // ended by throwing this out of the callback (the tiers' scans hold their resources by RAII).
  struct Enough {};
  try {
    source.for_each(chunk_rows, [&](const std::int64_t* keys, const float* rows, std::size_t n) {
      const std::size_t given = std::min(n, capacity - result.given);
      if (given > 0) take(keys, rows, given);
      result.given += given;
      result.left_out += n - given;
      if (!whole_table && result.given == capacity) throw Enough{};
    });
  } catch (const Enough&) {
  }
  return result;
}

}  // namespace hps

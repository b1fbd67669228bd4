// The rows a GPU cache starts with (every static cache, and a dynamic one with init_ec): read from
// the table's tier of record, never from the table files, because that tier may hold rows newer
// than the files (updates taken since the files were loaded into a RocksDB store or a shared Redis
// Cluster, which a restart does not reload) and may lack keys erased since. The files only rank
// keys, when their `meta` file gives frequencies and the cache holds fewer rows than they do.
//
// Threads: runs on the loading thread before the table serves lookups. Ownership: borrows
// everything for the call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "hps/tiers/tier.hpp"

namespace hps {

using WarmRowSink = std::function<void(const std::int64_t* keys, const float* rows, std::size_t n)>;

struct WarmStart {
  std::size_t given = 0;     ///< rows passed to the sink
  std::size_t left_out = 0;  ///< rows of the tier not passed (no room), counted for a whole-table start
  /// Why the files' meta did not rank the keys although it is there (empty: it did, or was not
  /// needed): the error reading the files. The tier's own order was used instead.
  std::string unranked_because;
};

/// Gives `take` at most `capacity` rows of `source` (the tier holding every row of the table), in
/// chunks of at most `chunk_rows`. `whole_table` (a static cache): every row the tier holds, read
/// to its end, counting in `left_out` those beyond `capacity`. Otherwise: the most frequent keys by
/// the table files' `meta` (of those the tier still holds) when `sparse_file` has one and more rows
/// than `capacity`, else the tier's first `capacity` rows (its scan stops there); files that cannot
/// be read also leave the tier's order, with the reason in `unranked_because`. `key64` is the
/// model's key width (to read file keys).
WarmStart warm_start_rows(Tier& source, const std::string& sparse_file, bool key64, std::size_t capacity,
                          bool whole_table, std::size_t chunk_rows, const WarmRowSink& take);

}  // namespace hps

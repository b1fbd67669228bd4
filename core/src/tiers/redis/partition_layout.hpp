// How a Redis Cluster table's partitions are named, and so on which slots (and masters) they land.
//
// The layout a table was written with is recorded in its load marker, so every server reading the
// table uses the names it was written under, whatever its own num_partitions says:
//   - kHashedNames (layout 1, tables written before markers recorded a layout): partition p is
//     `hps{<tag>/p<p>}v`; partitions land where their names hash, unevenly (16 over 3 masters
//     gave 7/4/5 and 4/4/8);
//   - kSpreadSlots (layout 2): partition p is `hps{<slot tag>}<tag>/p<p>v`, the hash tag chosen so
//     the table's P partitions sit on P slots evenly spaced around the 16384 (from an offset that
//     is the table tag's CRC16, so tables with fewer partitions than masters do not all use the
//     same masters). M masters owning equal slot ranges then hold P/M partitions each, give or take
//     one; or two, for the few tables whose partitions fall next to the ends of the ranges (under
//     1.5% of tables for any P <= 256 and M <= 12; test_redis_partition_layout.cpp).
// The metadata set of partition p is the same name ending in `t` instead of `v` (same slot).
//
// A value type; pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace hps::redis {

struct PartitionLayout {
  static constexpr int kHashedNames = 1;
  static constexpr int kSpreadSlots = 2;
  static constexpr int kNewest = kSpreadSlots;  ///< what tables are written with

  int version = kNewest;
  std::size_t partitions = 1;

  std::uint16_t slot(const std::string& tag, std::size_t p) const;
  std::string value_key(const std::string& tag, std::size_t p) const;  ///< the partition's hash of rows
  std::string meta_key(const std::string& tag, std::size_t p) const;   ///< its eviction metadata set

  /// The load marker as stored in the cluster: a first line naming this layout
  /// ("hps-layout <version> <partitions>"), then `marker`.
  std::string stored_marker(const std::string& marker) const;

  /// Splits a stored marker into the layout it names and the marker itself. A marker without a
  /// layout line was written before layouts were recorded: kHashedNames with
  /// `configured_partitions`. Throws IOError, naming `where`, for a layout line this build cannot
  /// read (a layout version newer than kNewest, or a malformed line).
  static std::pair<PartitionLayout, std::string> parse_stored(const std::string& stored,
                                                              std::size_t configured_partitions,
                                                              const std::string& where);

  bool operator==(const PartitionLayout& o) const { return version == o.version && partitions == o.partitions; }
};

}  // namespace hps::redis

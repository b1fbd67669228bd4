// HugeCTR's Kafka update messages: topic names and the message layout, parsed and packed.
//
// A message (the Kafka message value; its key is unused) is
//   u32 magic 'H','C','T','R' | u32 value_size | { key (key_size bytes) | value (value_size bytes) }*
// all little-endian; a key is 4 bytes (uint32, "supportlonglong": false) or 8 (int64), which the
// message does not say: both ends take it from the configuration. A value is value_size / 4 fp32.
// A message without pairs is a beacon. The topic of table <table> of model <model> is
// `hps_et.<model>.<table>` (the table's tag).
//
// Ownership: parse_message() returns a view into the caller's bytes, valid while they are.
// Threads: every function is pure and may be called from any thread.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hps HPS_EXPORT {
namespace kafka {

/// 'H','C','T','R' read as a little-endian u32.
inline constexpr std::uint32_t kMagic = 0x52544348u;
inline constexpr std::size_t kHeaderBytes = 8;
inline constexpr std::string_view kTopicPrefix = "hps_et.";

/// `hps_et.<model>.<table>`.
std::string topic_name(std::string_view model, std::string_view table);

/// The model and table a topic names, or nothing when it is not `hps_et.<model>.<table>` with
/// non-empty parts (the model has no '.'; the table is the rest).
struct TopicTable {
  std::string model;
  std::string table;
};
std::optional<TopicTable> parse_topic(std::string_view topic);

/// A parsed message: `pairs` pairs of a key_size-byte key and a value_size-byte value, starting
/// at `pairs_data` (not aligned: copy out with key()/row()).
struct MessageView {
  std::uint32_t value_size = 0;
  std::size_t key_size = 0;
  std::size_t pairs = 0;
  const std::byte* pairs_data = nullptr;

  bool beacon() const { return pairs == 0; }
  /// Key i widened to int64 (a 4-byte key is zero-extended: it is a uint32).
  std::int64_t key(std::size_t i) const;
  /// Copies the value of pair i (value_size bytes) to `out`.
  void copy_value(std::size_t i, void* out) const;
};

/// Parses a message with keys of `key_size` (4 or 8) bytes. Throws InvalidArgument naming the
/// fault: too short for the header, wrong magic, a value size that is not a positive multiple
/// of 4, or a length that leaves a truncated pair.
MessageView parse_message(const void* data, std::size_t size, std::size_t key_size);

/// Packs keys (int64; with key_size 4 each must fit a uint32 or int32 bit pattern) and their
/// rows[n][dim] into one message. Throws InvalidArgument on a key that does not fit.
std::vector<std::byte> pack_message(const std::int64_t* keys, const float* rows, std::size_t n, std::size_t dim,
                                    std::size_t key_size);

}  // namespace kafka
}  // namespace hps

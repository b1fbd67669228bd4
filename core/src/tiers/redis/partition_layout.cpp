#include "tiers/redis/partition_layout.hpp"

#include <charconv>

#include "hps/error.hpp"
#include "tiers/redis/slot.hpp"

namespace hps::redis {

namespace {

constexpr std::string_view kLayoutPrefix = "hps-layout ";

// Partition p of P sits at the middle of its 1/P of the slot ring, from the table's own offset
// (so tables with few partitions do not all start on the first master).
std::uint16_t spread_slot(const std::string& tag, std::size_t p, std::size_t partitions) {
  const std::uint64_t offset = crc16(tag.data(), tag.size()) % kSlotCount;
  const std::uint64_t step = (2 * static_cast<std::uint64_t>(p) + 1) * kSlotCount / (2 * partitions);
  return static_cast<std::uint16_t>((offset + step) % kSlotCount);
}

std::string key_of(const PartitionLayout& layout, const std::string& tag, std::size_t p, char kind) {
  if (layout.version == PartitionLayout::kHashedNames) return "hps{" + tag + "/p" + std::to_string(p) + "}" + kind;
  return "hps{" + slot_tag(spread_slot(tag, p, layout.partitions)) + "}" + tag + "/p" + std::to_string(p) + kind;
}

bool parse_number(std::string_view text, std::size_t& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

}  // namespace

std::uint16_t PartitionLayout::slot(const std::string& tag, std::size_t p) const {
  return key_slot(value_key(tag, p));
}

std::string PartitionLayout::value_key(const std::string& tag, std::size_t p) const { return key_of(*this, tag, p, 'v'); }

std::string PartitionLayout::meta_key(const std::string& tag, std::size_t p) const { return key_of(*this, tag, p, 't'); }

std::string PartitionLayout::stored_marker(const std::string& marker) const {
  return std::string(kLayoutPrefix) + std::to_string(version) + " " + std::to_string(partitions) + "\n" + marker;
}

std::pair<PartitionLayout, std::string> PartitionLayout::parse_stored(const std::string& stored,
                                                                      std::size_t configured_partitions,
                                                                      const std::string& where) {
  if (stored.compare(0, kLayoutPrefix.size(), kLayoutPrefix) != 0) {
    return {PartitionLayout{kHashedNames, configured_partitions}, stored};
  }
  const std::size_t newline = stored.find('\n');
  const std::string_view line = std::string_view(stored).substr(0, newline);
  const std::string_view fields = line.substr(kLayoutPrefix.size());
  const std::size_t space = fields.find(' ');
  std::size_t version = 0, partitions = 0;
  const bool well_formed = newline != std::string::npos && space != std::string_view::npos &&
                           parse_number(fields.substr(0, space), version) &&
                           parse_number(fields.substr(space + 1), partitions) && partitions > 0;
  HPS_EXPECTS(well_formed, IOError, where, ": the load marker's layout line is malformed (expected \"",
              kLayoutPrefix, "<version> <partitions>\", found \"", line, "\")");
  HPS_EXPECTS(version >= kHashedNames && version <= kNewest, IOError, where, ": the table is stored in layout ",
              version, ", which this build of hps cannot read (it knows layouts ", kHashedNames, " to ", kNewest,
              "); use the hps that wrote it, or delete that load marker so this one loads the table anew "
              "(the keys of the newer layout are then left in the cluster)");
  return {PartitionLayout{static_cast<int>(version), partitions}, stored.substr(newline + 1)};
}

}  // namespace hps::redis

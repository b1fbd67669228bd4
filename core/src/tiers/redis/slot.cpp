#include "tiers/redis/slot.hpp"

#include <array>
#include <string>
#include <vector>

namespace hps::redis {

namespace {

// Table-driven CRC16, the table built at compile time from the polynomial.
constexpr std::array<std::uint16_t, 256> make_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[i] = crc;
  }
  return table;
}

constexpr std::array<std::uint16_t, 256> kTable = make_table();

}  // namespace

std::uint16_t crc16(const char* data, std::size_t n) {
  std::uint16_t crc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    crc = static_cast<std::uint16_t>((crc << 8) ^ kTable[((crc >> 8) ^ static_cast<unsigned char>(data[i])) & 0xff]);
  }
  return crc;
}

std::uint16_t key_slot(std::string_view key) {
  const std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    // "{}" (nothing between) hashes the whole key, as Redis does.
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<std::uint16_t>(crc16(key.data(), key.size()) % kSlotCount);
}

std::string slot_tag(std::uint16_t slot) {
  // Which n is the first to land on each slot: the numbers from 0 cover every slot by 109,757
  // (about 110,000 CRCs of at most 6 bytes, once per process).
  static const std::vector<std::uint32_t> first_n = [] {
    std::vector<std::uint32_t> first(kSlotCount, UINT32_MAX);
    std::size_t covered = 0;
    for (std::uint32_t n = 0; covered < kSlotCount; ++n) {
      const std::string digits = std::to_string(n);
      std::uint32_t& entry = first[crc16(digits.data(), digits.size()) % kSlotCount];
      if (entry == UINT32_MAX) {
        entry = n;
        ++covered;
      }
    }
    return first;
  }();
  return std::to_string(first_n[slot % kSlotCount]);
}

}  // namespace hps::redis

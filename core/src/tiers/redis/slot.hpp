// Redis Cluster hash slots: CRC16 (XMODEM) of a key, or of its {hash tag}, modulo 16384.
//
// Pure functions, safe from any thread (slot_tag's table is built once, on first use).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hps::redis {

constexpr std::uint16_t kSlotCount = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
std::uint16_t crc16(const char* data, std::size_t n);

/// The slot of `key`, with Redis's hash-tag rule: when the key holds a '{' followed later by a '}'
/// with at least one byte between them, only the bytes between the first '{' and the next '}'
/// are hashed.
std::uint16_t key_slot(std::string_view key);

/// A hash tag that puts a key on `slot`: the decimal digits of the smallest n >= 0 whose CRC16 is
/// `slot` modulo 16384 (at most "109757"), so `"{" + slot_tag(s) + "}..."` lands on slot s.
std::string slot_tag(std::uint16_t slot);

}  // namespace hps::redis

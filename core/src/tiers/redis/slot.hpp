// Redis Cluster hash slots: CRC16 (XMODEM) of a key, or of its {hash tag}, modulo 16384.
//
// Pure functions; no state, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace hps::redis {

constexpr std::uint16_t kSlotCount = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
std::uint16_t crc16(const char* data, std::size_t n);

/// The slot of `key`, with Redis's hash-tag rule: when the key holds a '{' followed later by a '}'
/// with at least one byte between them, only the bytes between the first '{' and the next '}'
/// are hashed.
std::uint16_t key_slot(std::string_view key);

}  // namespace hps::redis

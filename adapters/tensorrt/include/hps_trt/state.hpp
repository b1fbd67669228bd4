// The plugin's serialized state: what a TensorRT engine stores for each HPS_TRT layer and hands
// back when the engine is deserialized.
//
// Format (little-endian), version 1:
//   magic "HPST" | u16 version | u16 reserved (0) | u32 payload bytes | u32 FNV-1a of the payload |
//   payload: u32 n, n bytes ps_config_file | u32 n, n bytes model_name | i32 table_id |
//            i32 emb_vec_size | u8 output type
// A later version may append payload fields; a reader refuses versions it does not know.
//
// Ownership: serialize returns an owned buffer; deserialize borrows its input for the call.
// Threading: pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hps_trt/fields.hpp"

namespace hps_trt {

inline constexpr char kStateMagic[4] = {'H', 'P', 'S', 'T'};
inline constexpr std::uint16_t kStateVersion = 1;
/// The name of the one field (kUnknown, the state's bytes) the runtime part serializes.
inline constexpr const char* kStateField = "hps_state";

std::vector<std::uint8_t> serialize(const PluginConfig& config);

/// The configuration `serialize` wrote. Throws PluginError for a wrong magic, an unknown version,
/// a size that disagrees with the header, a checksum mismatch, or fields that fail parse_fields'
/// rules; the message says which and at what byte offset.
PluginConfig deserialize(const void* data, std::size_t size);

}  // namespace hps_trt

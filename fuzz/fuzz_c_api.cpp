// libFuzzer target: the C ABI (hps/c_api.h) given a fuzzed config and fuzzed calls.
//
// Input: u8 acquire flags | config JSON text | '\0' | calls, 8 bytes each:
//   u8 call | i8 dtype | u8 n | u8 pointer flags | u8 model | u8 table | u8 device? | i8 device
// (the device is HPS_HOST unless `device?` % 3 == 0)
// followed by the bytes the calls take their keys, rows and names from. Relative sparse_files
// paths resolve against a scratch folder holding table folders t (16 keys 0..15, dim 4) and u
// (dim 1). Acquire flags: 1 no options struct, 2 a too-small struct_size, 4 acquire again with
// other options (must fail), 8 also try the text as a server id.
//
// What the harness keeps to (the ABI's contract, not checked by it): a non-null buffer holds what
// its size arguments say. What the ABI promises and this target checks: every call returns a
// defined status, never HPS_ERROR_INTERNAL (an exception hps did not mean to throw); a failing
// call sets a message and leaves its outputs unchanged; null pointers, bad dtypes, bad table
// handles, devices and sizes are refused, never dereferenced (ASan, UBSan).
//
// Safety: the fuzz build has no RocksDB, Redis or Kafka (checked at start), so a fuzzed config can
// neither write to a path it names nor reach the network.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "c_abi_calls.h"
#include "fuzz_support.hpp"
#include "hps/build_info.hpp"
#include "hps/c_api.h"
#include "hps/model_io.hpp"

namespace {

/// The fuzzer's input, read front to back; past its end every read gives zeros.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  void fill(void* out, std::size_t n) {
    auto* p = static_cast<std::uint8_t*>(out);
    for (std::size_t i = 0; i < n; ++i) p[i] = u8();
  }
  std::string text(std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(u8()));
    return s;
  }
  bool done() const { return at_ >= size_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

void check_status(hps_status_t status, const char* call) {
  const int code = static_cast<int>(status);
  if (code < HPS_OK || code > HPS_ERROR_INTERNAL) hps_fuzz::fail(std::string(call) + " returned status " + std::to_string(code));
  if (status == HPS_ERROR_INTERNAL) hps_fuzz::fail(std::string(call) + ": HPS_ERROR_INTERNAL: " + hps_last_error());
  if (status != HPS_OK && hps_last_error()[0] == '\0') hps_fuzz::fail(std::string(call) + " failed without a message");
}

/// `after` must equal `before` when the call failed.
void check_unchanged(hps_status_t status, const std::vector<std::uint8_t>& before, const void* after,
                     const char* call) {
  if (status != HPS_OK && !before.empty() && std::memcmp(before.data(), after, before.size()) != 0) {
    hps_fuzz::fail(std::string(call) + " failed (" + hps_last_error() + ") but wrote its output");
  }
}

std::size_t key_bytes(int dtype) { return dtype == HPS_KEY_INT32 || dtype == HPS_KEY_UINT32 ? 4 : 8; }

/// The dim of a table handle, or 1 when the handle is bad (the call must then fail, writing nothing).
std::size_t dim_of(hps_server_t* server, hps_table_t table) {
  std::size_t dim = 0;
  return hps_table_dim(server, table, &dim) == HPS_OK ? dim : 1;
}

void run_call(hps_server_t* server, Bytes& in) {
  const std::uint8_t call = in.u8() % 10;
  const int dtype_value = static_cast<std::int8_t>(in.u8());
  const std::size_t n = in.u8() % 64;
  const std::uint8_t flags = in.u8();
  const hps_table_t table{in.u8() % 4u, in.u8() % 4u};
  const bool on_device = in.u8() % 3 == 0;
  const int device = on_device ? static_cast<std::int8_t>(in.u8()) : (in.u8(), HPS_HOST);
  hps_server_t* target = (flags & 4) ? nullptr : server;
  // Any int as the dtype, passed from C (c_abi_calls.c) as a C caller would.
  const int dtype = dtype_value;

  std::vector<std::uint8_t> keys(n * key_bytes(dtype_value));
  in.fill(keys.data(), keys.size());
  const void* key_ptr = (flags & 1) ? nullptr : keys.data();
  switch (call) {
    case 0: {  // lookup
      const std::size_t dim = dim_of(server, table);
      std::vector<float> out(n * dim, -7.0f);
      std::vector<std::uint8_t> before(reinterpret_cast<std::uint8_t*>(out.data()),
                                       reinterpret_cast<std::uint8_t*>(out.data() + out.size()));
      const hps_status_t s = fuzz_lookup(target, table, key_ptr, dtype, n, (flags & 2) ? nullptr : out.data(), device);
      check_status(s, "hps_lookup");
      check_unchanged(s, before, out.data(), "hps_lookup");
      if (target == nullptr && s == HPS_OK) hps_fuzz::fail("hps_lookup accepted a null server");
      if (n > 0 && (flags & 3) && s == HPS_OK) hps_fuzz::fail("hps_lookup accepted null keys or output");
      break;
    }
    case 1: {  // lookup_many over up to 3 tables
      const std::size_t count = flags >> 6;
      std::vector<hps_table_t> tables(count);
      std::vector<std::size_t> sizes(count);
      std::vector<std::vector<std::uint8_t>> key_sets(count);
      std::vector<std::vector<float>> outs(count);
      std::vector<const void*> key_ptrs(count);
      std::vector<float*> out_ptrs(count);
      for (std::size_t i = 0; i < count; ++i) {
        tables[i] = {in.u8() % 3u, in.u8() % 3u};
        sizes[i] = in.u8() % 16;
        key_sets[i].resize(sizes[i] * key_bytes(dtype_value));
        in.fill(key_sets[i].data(), key_sets[i].size());
        outs[i].assign(sizes[i] * dim_of(server, tables[i]), -7.0f);
        key_ptrs[i] = (flags & 1) && i == 0 ? nullptr : key_sets[i].data();
        out_ptrs[i] = (flags & 2) && i == 0 ? nullptr : outs[i].data();
      }
      const auto snapshot = outs;
      const hps_status_t s = fuzz_lookup_many(target, count, (flags & 8) ? nullptr : tables.data(),
                                              (flags & 16) ? nullptr : key_ptrs.data(), dtype,
                                              (flags & 32) ? nullptr : sizes.data(), out_ptrs.data(), device);
      check_status(s, "hps_lookup_many");
      if (s != HPS_OK && snapshot != outs) hps_fuzz::fail(std::string("hps_lookup_many failed (") + hps_last_error() + ") but wrote rows");
      break;
    }
    case 2: {  // update
      std::vector<float> rows(n * dim_of(server, table));
      in.fill(rows.data(), rows.size() * sizeof(float));
      check_status(fuzz_update(target, table, key_ptr, dtype, n, (flags & 2) ? nullptr : rows.data()), "hps_update");
      break;
    }
    case 3: {  // erase
      std::size_t erased = 12345;
      const hps_status_t s = fuzz_erase(target, table, key_ptr, dtype, n, (flags & 2) ? nullptr : &erased);
      check_status(s, "hps_erase");
      if (s != HPS_OK && erased != 12345) hps_fuzz::fail("hps_erase failed but wrote `erased`");
      if (s == HPS_OK && !(flags & 2) && erased > n) hps_fuzz::fail("hps_erase erased more keys than it was given");
      break;
    }
    case 4: {  // tables by name
      const std::string model = in.text(in.u8() % 8), name = in.text(in.u8() % 20);
      hps_table_t out{77, 77};
      const hps_status_t s = hps_table_by_name(target, (flags & 1) ? nullptr : model.c_str(),
                                               (flags & 2) ? nullptr : name.c_str(), (flags & 8) ? nullptr : &out);
      check_status(s, "hps_table_by_name");
      if (s != HPS_OK && (out.model != 77 || out.table != 77)) hps_fuzz::fail("hps_table_by_name failed but wrote");
      break;
    }
    case 5: {  // tables by index
      const std::string model = in.text(in.u8() % 8);
      hps_table_t out{77, 77};
      const hps_status_t s = hps_table_by_index(target, (flags & 1) ? nullptr : model.c_str(), n,
                                                (flags & 8) ? nullptr : &out);
      check_status(s, "hps_table_by_index");
      if (s != HPS_OK && (out.model != 77 || out.table != 77)) hps_fuzz::fail("hps_table_by_index failed but wrote");
      break;
    }
    case 6: {  // the JSON and text outputs
      char* text = nullptr;
      const bool null_out = flags & 2;
      hps_status_t s;
      switch (n % 4) {
        case 0: s = hps_stats_json(target, null_out ? nullptr : &text); break;
        case 1: s = hps_prometheus(target, null_out ? nullptr : &text); break;
        case 2: s = hps_server_config_json(target, null_out ? nullptr : &text); break;
        default: s = hps_update_sources_json(target, null_out ? nullptr : &text); break;
      }
      check_status(s, "a text output call");
      if (s == HPS_OK && (text == nullptr || (null_out))) hps_fuzz::fail("a text output call succeeded without output");
      hps_free(text);
      break;
    }
    case 7: {  // small outputs
      int value = 5;
      const char* id = nullptr;
      std::size_t dim = 0;
      const bool null_out = flags & 2;
      check_status(hps_server_key64(target, null_out ? nullptr : &value), "hps_server_key64");
      check_status(hps_server_gpu_enabled(target, null_out ? nullptr : &value), "hps_server_gpu_enabled");
      check_status(hps_server_id(target, null_out ? nullptr : &id), "hps_server_id");
      check_status(hps_table_dim(target, table, null_out ? nullptr : &dim), "hps_table_dim");
      break;
    }
    case 8: {  // refresh a model by name
      const std::string model = in.text(in.u8() % 8);
      check_status(hps_refresh(target, (flags & 1) ? nullptr : model.c_str()), "hps_refresh");
      break;
    }
    default: {  // another reference, dropped again
      const hps_status_t s = hps_server_retain(target);
      check_status(s, "hps_server_retain");
      if (s == HPS_OK) check_status(hps_server_release(target), "hps_server_release");
      break;
    }
  }
}

void write_table(const std::string& folder, std::size_t rows, std::size_t dim) {
  std::vector<std::int64_t> keys(rows);
  std::vector<float> values(rows * dim);
  for (std::size_t i = 0; i < rows; ++i) keys[i] = static_cast<std::int64_t>(i);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.25f;
  hps::write_sparse_model(folder, keys.data(), values.data(), rows, dim);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string features = hps::build_features();
  for (const char* backend : {"\"rocksdb\": true", "\"redis\": true", "\"kafka\": true"}) {
    if (features.find(backend) != std::string::npos) {
      hps_fuzz::fail("this target must be built without RocksDB, Redis and Kafka (a fuzzed config could write to "
                     "any path or reach the network); build it with scripts/fuzz.sh. Features: " + features);
    }
  }
  write_table((hps_fuzz::scratch_folder() / "t").string(), 16, 4);
  write_table((hps_fuzz::scratch_folder() / "u").string(), 3, 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t acquire = data[0];
  const auto* text_begin = reinterpret_cast<const char*>(data + 1);
  const std::size_t text_size = strnlen(text_begin, size - 1);
  const std::string json(text_begin, text_size);
  Bytes calls(data + 1 + std::min(text_size + 1, size - 1), size - 1 - std::min(text_size + 1, size - 1));

  hps_server_options_t options;
  hps_server_options_init(&options);
  options.lookup_threads = 1 + (acquire >> 7);
  if (acquire & 2) options.struct_size = acquire >> 4;
  const std::string base = hps_fuzz::scratch_folder().string();
  hps_server_t* server = reinterpret_cast<hps_server_t*>(0x1);  // must be replaced or left alone
  hps_server_t* const untouched = server;
  const hps_status_t s = hps_server_acquire_json(json.c_str(), base.c_str(), (acquire & 1) ? nullptr : &options, &server);
  check_status(s, "hps_server_acquire_json");
  if (s != HPS_OK) {
    if (server != untouched) hps_fuzz::fail("a failed acquire wrote the server handle");
    return 0;
  }
  if ((acquire & 3) == 2) {  // a struct_size of 0..15 bytes covers no field
    hps_fuzz::fail("an options struct of " + std::to_string(options.struct_size) + " bytes was accepted");
  }
  if (acquire & 4) {
    hps_server_options_t other;
    hps_server_options_init(&other);
    other.lookup_threads = options.lookup_threads + 1;
    hps_server_t* second = untouched;
    const hps_status_t again = hps_server_acquire_json(json.c_str(), base.c_str(), &other, &second);
    check_status(again, "hps_server_acquire_json (other options)");
    if (again == HPS_OK && (acquire & 3) == 0) hps_fuzz::fail("a second acquire with other options was accepted");
    if (again == HPS_OK) hps_server_release(second);
  }
  if ((acquire & 8) && !json.empty() && json[0] != '/') {
    hps_server_t* by_id = untouched;
    const hps_status_t found = hps_server_acquire_id(json.c_str(), nullptr, &by_id);
    check_status(found == HPS_ERROR_NOT_FOUND ? HPS_OK : found, "hps_server_acquire_id");
    if (found == HPS_OK) hps_server_release(by_id);
  }
  for (int i = 0; i < 32 && !calls.done(); ++i) run_call(server, calls);
  check_status(hps_server_release(server), "hps_server_release");
  return 0;
}

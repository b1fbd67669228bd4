// libFuzzer target: the config parser (hps::parse_config) on arbitrary text, HugeCTR's keys
// included (the seed corpus holds HugeCTR and hps configs).
//
// Properties: parsing returns a Config or throws hps::ConfigError (any other exception, a crash or
// a sanitizer report is a failure); a Config it returns normalizes (config_to_json) to JSON that
// parses again, to the same normalized JSON, and check_config_loadable answers with an hps::Error
// or nothing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "hps/config.hpp"
#include "hps/error.hpp"
#include "hps/parameter_server.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A fixed base folder: relative paths resolve against it without touching the file system.
  const std::string base = "/hps-fuzz-base";
  hps::Config config;
  try {
    config = hps::parse_config(text, "<fuzz>", base);
  } catch (const hps::ConfigError&) {
    return 0;
  }
  const std::string normalized = hps::config_to_json(config);
  std::string again;
  try {
    again = hps::config_to_json(hps::parse_config(normalized, "<normalized>", base));
  } catch (const hps::Error& e) {
    hps_fuzz::fail(std::string("the normalized config does not parse: ") + e.what() + "\n" + normalized);
  }
  if (again != normalized) hps_fuzz::fail("normalizing twice changed the config:\n" + normalized + "\n" + again);
  try {
    hps::check_config_loadable(config);  // opens nothing: in the fuzz build no backend needs a path
  } catch (const hps::Error&) {
  }
  return 0;
}

// Helpers shared by the libFuzzer targets of this folder: a scratch folder per fuzzing process,
// whole-file writes, and a failure that libFuzzer records as a crash.
//
// Ownership: scratch_folder() owns its folder for the life of the process (removed at exit).
// Threading: libFuzzer calls a target from one thread; none of this is meant for more.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace hps_fuzz {

/// A folder of this process under $TMPDIR (or /tmp), created on first use, removed at exit.
inline const std::filesystem::path& scratch_folder() {
  static const std::filesystem::path folder = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/hps-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("hps fuzz: mkdtemp");
      std::abort();
    }
    return std::filesystem::path(pattern);
  }();
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_folder(), ignored);
    });
    return true;
  }();
  (void)cleanup;
  return folder;
}

/// Replaces `path` with exactly these bytes.
inline void write_file(const std::filesystem::path& path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::fprintf(stderr, "hps fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

/// A property the target checks does not hold: print why and abort, which libFuzzer reports as a
/// crash and saves the input for.
[[noreturn]] inline void fail(const std::string& why) {
  std::fprintf(stderr, "hps fuzz: property violated: %s\n", why.c_str());
  std::abort();
}

}  // namespace hps_fuzz

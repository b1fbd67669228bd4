# HPS_BUILD_FUZZERS=ON: every target of this build (the core included) is compiled with libFuzzer's
# coverage instrumentation and AddressSanitizer + UndefinedBehaviorSanitizer, so a fuzzer sees the
# branches of the code it drives and any memory error or undefined behaviour in it is a crash.
# Only clang has libFuzzer; scripts/fuzz.sh configures such a build in build/fuzz.

if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "HPS_BUILD_FUZZERS=ON needs clang (libFuzzer is part of clang's runtime), but the C++ "
                      "compiler is ${CMAKE_CXX_COMPILER_ID}. Install it (Debian: apt-get install clang "
                      "libclang-rt-14-dev) and configure with CC=clang CXX=clang++, or run scripts/fuzz.sh.")
endif()

# -fsanitize=fuzzer-no-link: coverage counters without libFuzzer's main; the fuzz targets link it.
set(HPS_FUZZ_SANITIZE -fsanitize=address,undefined -fno-sanitize-recover=all)
# Line tables only: file:line in every report, at a fraction of full debug info's compile time.
add_compile_options(${HPS_FUZZ_SANITIZE} -fsanitize=fuzzer-no-link -fno-omit-frame-pointer -gline-tables-only)
add_link_options(${HPS_FUZZ_SANITIZE})

# clang applies a namespace's visibility attribute only to what is declared inside that block, not
# to the definitions in the .cpp files (GCC carries it over from the declaration), so with hidden
# visibility a clang-built libhps_core would export none of hps::. Here every symbol is default;
# the linker version script still exports only hps_* and hps::.
set(CMAKE_CXX_VISIBILITY_PRESET default)
set(CMAKE_VISIBILITY_INLINES_HIDDEN OFF)

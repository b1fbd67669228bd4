// Symbol visibility: libhps_core is built with hidden visibility; every public header opens its
// namespace as `namespace hps HPS_EXPORT` (the attribute after the name, where GCC, clang and nvcc
// all take it), which exports what it declares and nothing else.
#pragma once

#if defined(_WIN32)
#define HPS_EXPORT
#else
#define HPS_EXPORT __attribute__((visibility("default")))
#endif

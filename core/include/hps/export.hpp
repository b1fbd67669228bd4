// Symbol visibility: libhps_core is built with hidden visibility; every public header opens its
// namespace as `namespace HPS_EXPORT hps`, which exports what it declares and nothing else.
#pragma once

#if defined(_WIN32)
#define HPS_EXPORT
#else
#define HPS_EXPORT __attribute__((visibility("default")))
#endif

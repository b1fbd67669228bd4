/* The checks of the plain-C tests: CHECK(cond) and OK(call) print where they failed and count the
 * failures in `failures` (one counter per test program, which exits non-zero when it is not 0). */
#ifndef HPS_TESTS_C_CHECKS_H
#define HPS_TESTS_C_CHECKS_H

#include <hps/c_api.h>
#include <stdio.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

/* A call that must succeed; on failure prints its status and message. */
#define OK(call)                                                                                  \
  do {                                                                                            \
    hps_status_t st_ = (call);                                                                    \
    if (st_ != HPS_OK) {                                                                          \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, hps_status_name(st_), \
              hps_last_error());                                                                  \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

#endif

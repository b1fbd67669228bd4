/* The calls of c_abi_calls.c: hps_lookup, hps_lookup_many, hps_update and hps_erase with the key
 * dtype as a plain int (the stream is always NULL). */
#ifndef HPS_FUZZ_C_ABI_CALLS_H_
#define HPS_FUZZ_C_ABI_CALLS_H_

#include "hps/c_api.h"

#ifdef __cplusplus
extern "C" {
#endif

hps_status_t fuzz_lookup(hps_server_t* server, hps_table_t table, const void* keys, int dtype, size_t n, float* out,
                         int device);
hps_status_t fuzz_lookup_many(hps_server_t* server, size_t count, const hps_table_t* tables, const void* const* keys,
                              int dtype, const size_t* n, float* const* out, int device);
hps_status_t fuzz_update(hps_server_t* server, hps_table_t table, const void* keys, int dtype, size_t n,
                         const float* rows);
hps_status_t fuzz_erase(hps_server_t* server, hps_table_t table, const void* keys, int dtype, size_t n,
                        size_t* erased);

#ifdef __cplusplus
}
#endif

#endif

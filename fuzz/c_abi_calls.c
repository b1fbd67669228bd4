/* fuzz_c_api's calls that take a key dtype, made from C: a fuzzed dtype reaches the library as a C
 * caller passes it (any int value; in C an enum is its int), which C++ code cannot do without
 * loading an out-of-range enum value itself (undefined behaviour there, reported by UBSan).
 * Ownership and threading: as the hps_* functions they forward to. */
#include "hps/c_api.h"

#include "c_abi_calls.h"

hps_status_t fuzz_lookup(hps_server_t* server, hps_table_t table, const void* keys, int dtype, size_t n, float* out,
                         int device) {
  return hps_lookup(server, table, keys, (hps_key_dtype_t)dtype, n, out, device, NULL);
}

hps_status_t fuzz_lookup_many(hps_server_t* server, size_t count, const hps_table_t* tables, const void* const* keys,
                              int dtype, const size_t* n, float* const* out, int device) {
  return hps_lookup_many(server, count, tables, keys, (hps_key_dtype_t)dtype, n, out, device, NULL);
}

hps_status_t fuzz_update(hps_server_t* server, hps_table_t table, const void* keys, int dtype, size_t n,
                         const float* rows) {
  return hps_update(server, table, keys, (hps_key_dtype_t)dtype, n, rows);
}

hps_status_t fuzz_erase(hps_server_t* server, hps_table_t table, const void* keys, int dtype, size_t n,
                        size_t* erased) {
  return hps_erase(server, table, keys, (hps_key_dtype_t)dtype, n, erased);
}

/* The C ABI of libhps_core: the one surface every non-Python host links against (the TensorFlow
 * op library, the TensorRT plugin, the torch C++ op, plain C or C++ programs).
 *
 * Plain C11, no C++ type crosses it. Stability rules:
 *  - HPS_C_ABI_VERSION changes only when an existing declaration changes meaning or layout; new
 *    functions are added without a bump. A host checks hps_abi_version() == HPS_C_ABI_VERSION.
 *  - Structs passed in start with a `struct_size` field the caller sets to sizeof(the struct), so
 *    fields can be appended later; the library reads only the fields that size covers.
 *  - Only `hps_*` symbols are exported (a linker version script keeps everything else local).
 *
 * Errors: every call returns an hps_status_t. HPS_OK is 0; on any other status hps_last_error()
 * returns the message of the failure, kept per thread until that thread's next failing call.
 * A failed call leaves its outputs and the stored tables unchanged.
 *
 * Servers: hps_server_acquire_file() / hps_server_acquire_json() give a counted reference to the
 * process-wide server of a configuration. Every caller in one process that names the same config
 * (the same file, or JSON text that normalizes to the same config) shares one server, whichever
 * adapter it comes from (hps.HPS, hps.torch, hps.tf, the TensorRT plugin); different configs get
 * different servers. hps_server_release() drops one reference; the last one frees the server and
 * its tiers. A handle may be used from many threads at once.
 *
 * Ownership: pointers passed in are borrowed for the duration of the call. Strings returned through
 * `char**` are allocated by the library and freed with hps_free(). `const char*` results live as
 * long as what returned them (the process for hps_version, the server for hps_server_id).
 *
 * Devices: `device` is a CUDA device ordinal, or HPS_HOST (-1) when keys and outputs are in host
 * memory. `stream` is a cudaStream_t passed as void*; NULL means CUDA's legacy default stream (pass
 * the framework's current stream instead; a device call never picks one itself). Device calls are
 * ordered on that stream: their outputs are ready when work queued on it after the call runs.
 */
#ifndef HPS_C_API_H_
#define HPS_C_API_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define HPS_C_EXPORT
#else
#define HPS_C_EXPORT __attribute__((visibility("default")))
#endif

/* The ABI this header describes. */
#define HPS_C_ABI_VERSION 1

/* `device` value for host memory. */
#define HPS_HOST (-1)

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hps_status {
  HPS_OK = 0,
  HPS_ERROR_CONFIG = 1,              /* the configuration is malformed or cannot be served */
  HPS_ERROR_INVALID_ARGUMENT = 2,    /* a bad argument: NULL pointer, key out of range, wrong device */
  HPS_ERROR_NOT_FOUND = 3,           /* no such model or table */
  HPS_ERROR_IO = 4,                  /* a table file or database could not be read or written */
  HPS_ERROR_BACKEND_UNAVAILABLE = 5, /* a backend (CUDA, RocksDB, ...) missing from this build or unreachable */
  HPS_ERROR_OUT_OF_MEMORY = 6,       /* a tier cannot take what it was asked to hold */
  HPS_ERROR_INTERNAL = 7             /* anything else; the message says what */
} hps_status_t;

/* Key element types (the values of hps::KeyDtype). */
typedef enum hps_key_dtype {
  HPS_KEY_INT32 = 0,
  HPS_KEY_INT64 = 1,
  HPS_KEY_UINT32 = 2,
  HPS_KEY_UINT64 = 3
} hps_key_dtype_t;

/* A parameter server (opaque). */
typedef struct hps_server hps_server_t;

/* One table of one model of a server, as found by hps_table_by_name / hps_table_by_index. Valid for
 * the server it came from. */
typedef struct hps_table {
  uint32_t model;
  uint32_t table;
} hps_table_t;

/* Called while a server loads its tables: a step named `what` began (done == 0), advanced, or
 * ended (done == total). May be called from the acquiring thread only. */
typedef void (*hps_progress_fn)(void* user, const char* what, size_t done, size_t total);

/* Run-time settings that are not part of the configuration. Initialise with
 * hps_server_options_init(), then change fields. A second acquire of a config that is already
 * served must not ask for different settings (HPS_ERROR_INVALID_ARGUMENT says which). */
typedef struct hps_server_options {
  size_t struct_size;        /* sizeof(hps_server_options_t) */
  size_t lookup_threads;     /* host threads one lookup may use; 0 = min(16, hardware threads) */
  int64_t lookup_spin_us;    /* idle lookup threads poll this long before sleeping; < 0 = HPS_LOOKUP_SPIN_US or 200 */
  hps_progress_fn progress;  /* may be NULL */
  void* progress_user;
} hps_server_options_t;

/* ---- library ------------------------------------------------------------------------------- */

/* The library's version, e.g. "0.2.0". */
HPS_C_EXPORT const char* hps_version(void);
/* The ABI the library implements; compare with HPS_C_ABI_VERSION. */
HPS_C_EXPORT int hps_abi_version(void);
/* The message of this thread's last failing call ("" when none failed). */
HPS_C_EXPORT const char* hps_last_error(void);
/* A constant name for a status ("HPS_OK", "HPS_ERROR_CONFIG", ...). */
HPS_C_EXPORT const char* hps_status_name(hps_status_t status);
/* Frees a string the library returned through a char** argument. NULL is ignored. */
HPS_C_EXPORT void hps_free(char* text);
/* CUDA devices visible to the library (0 in a build without CUDA or on a machine without a GPU). */
HPS_C_EXPORT hps_status_t hps_cuda_device_count(int* count);

/* ---- servers ------------------------------------------------------------------------------- */

HPS_C_EXPORT void hps_server_options_init(hps_server_options_t* options);

/* A reference to the server of the config file at `path` (shared by every caller naming the same
 * file). `options` may be NULL (defaults). */
HPS_C_EXPORT hps_status_t hps_server_acquire_file(const char* path, const hps_server_options_t* options,
                                                  hps_server_t** server);
/* Same for config JSON text; relative paths in it resolve against `base_dir` (NULL: the working
 * directory). */
HPS_C_EXPORT hps_status_t hps_server_acquire_json(const char* json_text, const char* base_dir,
                                                  const hps_server_options_t* options, hps_server_t** server);
/* A reference to the server named `id` (what hps_server_id returns): the live server of that id,
 * or, for an absolute config path, the server of that file (built when none is live). Any other id
 * with no live server is HPS_ERROR_NOT_FOUND. For hosts that carry only the id (the torch op). */
HPS_C_EXPORT hps_status_t hps_server_acquire_id(const char* id, const hps_server_options_t* options,
                                                hps_server_t** server);
/* Another reference to the same server. */
HPS_C_EXPORT hps_status_t hps_server_retain(hps_server_t* server);
/* Drops one reference; the last one frees the server. NULL is ignored. */
HPS_C_EXPORT hps_status_t hps_server_release(hps_server_t* server);
/* The registry's name of the server: the absolute config path, or "hps-json:<digest>" for JSON text. */
HPS_C_EXPORT hps_status_t hps_server_id(hps_server_t* server, const char** id);
/* The normalized configuration the server runs, as JSON (free with hps_free). */
HPS_C_EXPORT hps_status_t hps_server_config_json(hps_server_t* server, char** json);
/* 1 when keys are 64-bit (supportlonglong), else 0. */
HPS_C_EXPORT hps_status_t hps_server_key64(hps_server_t* server, int* key64);
/* 1 when GPU caches serve this server's tables (CUDA present and gpucache on), else 0. */
HPS_C_EXPORT hps_status_t hps_server_gpu_enabled(hps_server_t* server, int* enabled);

/* ---- tables -------------------------------------------------------------------------------- */

HPS_C_EXPORT hps_status_t hps_table_by_name(hps_server_t* server, const char* model, const char* table,
                                            hps_table_t* out);
HPS_C_EXPORT hps_status_t hps_table_by_index(hps_server_t* server, const char* model, size_t index,
                                             hps_table_t* out);
/* Floats per row of the table. */
HPS_C_EXPORT hps_status_t hps_table_dim(hps_server_t* server, hps_table_t table, size_t* dim);

/* ---- lookups and updates ------------------------------------------------------------------- */

/* Writes the rows of keys[0..n) to out[n][dim]: the stored row of every key some tier holds, the
 * table's default row for the others. Keys and out in host memory (device == HPS_HOST) or both on
 * CUDA device `device`, ordered on `stream`. */
HPS_C_EXPORT hps_status_t hps_lookup(hps_server_t* server, hps_table_t table, const void* keys,
                                     hps_key_dtype_t dtype, size_t n, float* out, int device, void* stream);
/* Several tables in one call, side by side: table i gets n[i] keys at keys[i] and writes out[i]. */
HPS_C_EXPORT hps_status_t hps_lookup_many(hps_server_t* server, size_t count, const hps_table_t* tables,
                                          const void* const* keys, hps_key_dtype_t dtype, const size_t* n,
                                          float* const* out, int device, void* stream);
/* Stores rows[n][dim] (host memory) under keys[0..n) (host memory) in every tier and GPU cache; when
 * it returns no lookup sees the old rows. Duplicate keys: the last row wins. */
HPS_C_EXPORT hps_status_t hps_update(hps_server_t* server, hps_table_t table, const void* keys,
                                     hps_key_dtype_t dtype, size_t n, const float* rows);
/* Removes keys (host memory) from every tier and GPU cache; `erased` (may be NULL) gets how many of
 * them some tier held. */
HPS_C_EXPORT hps_status_t hps_erase(hps_server_t* server, hps_table_t table, const void* keys,
                                    hps_key_dtype_t dtype, size_t n, size_t* erased);
/* Re-reads the rows cached in the model's GPU caches from the host tiers. */
HPS_C_EXPORT hps_status_t hps_refresh(hps_server_t* server, const char* model);

/* ---- metrics ------------------------------------------------------------------------------- */

/* Per-table metrics as a JSON array (the objects hps.HPS.stats() returns); free with hps_free. */
HPS_C_EXPORT hps_status_t hps_stats_json(hps_server_t* server, char** json);
/* The metrics in Prometheus text format (0.0.4); free with hps_free. */
HPS_C_EXPORT hps_status_t hps_prometheus(hps_server_t* server, char** text);
/* The update sources (the Kafka consumer) as a JSON array of {name, received, applied, rows, errors,
 * lag, last_error}; free with hps_free. */
HPS_C_EXPORT hps_status_t hps_update_sources_json(hps_server_t* server, char** json);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HPS_C_API_H_ */

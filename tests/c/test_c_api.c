/* The C ABI from plain C11: servers, sharing, lookups, updates, erasure, metrics and errors.
 *
 * Usage: test_c_api <scratch folder>. Writes HugeCTR's table folder format itself (raw int64 `key`,
 * raw float32 `emb_vector`), so nothing but libhps_core, this file and c_checks.h is involved. Exit
 * status 0 when every check passed; each failed check prints one line.
 */
#include <hps/c_api.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "c_checks.h"

/* A call that must fail with `code` and a message containing `needle`. */
#define FAILS(call, code, needle)                                                                      \
  do {                                                                                                 \
    hps_status_t st_ = (call);                                                                         \
    if (st_ != (code) || strstr(hps_last_error(), (needle)) == NULL) {                                 \
      fprintf(stderr, "%s:%d: %s -> %s (wanted %s) with message '%s' (wanted it to contain '%s')\n", \
              __FILE__, __LINE__, #call, hps_status_name(st_), hps_status_name(code), hps_last_error(), \
              (needle));                                                                               \
      ++failures;                                                                                      \
    }                                                                                                  \
  } while (0)

enum { ROWS = 100, DIM = 4 };
static const float DEFAULT_VALUE = -0.5f;

static float stored(int64_t key, int j) { return (float)key * 0.25f + (float)j; }

static int write_file(const char* path, const void* data, size_t bytes) {
  FILE* f = fopen(path, "wb");
  if (f == NULL) return -1;
  size_t written = fwrite(data, 1, bytes, f);
  return (fclose(f) == 0 && written == bytes) ? 0 : -1;
}

/* A table folder of ROWS keys 1000, 1003, 1006, ... with rows stored(key, j). */
static int write_table(const char* folder) {
  int64_t keys[ROWS];
  float rows[ROWS * DIM];
  char path[4096 + 64];
  if (mkdir(folder, 0755) != 0 && errno != EEXIST) return -1;
  for (int i = 0; i < ROWS; ++i) {
    keys[i] = 1000 + 3 * i;
    for (int j = 0; j < DIM; ++j) rows[i * DIM + j] = stored(keys[i], j);
  }
  snprintf(path, sizeof path, "%s/key", folder);
  if (write_file(path, keys, sizeof keys) != 0) return -1;
  snprintf(path, sizeof path, "%s/emb_vector", folder);
  return write_file(path, rows, sizeof rows);
}

static int row_is(const float* row, int64_t key) {
  for (int j = 0; j < DIM; ++j)
    if (row[j] != stored(key, j)) return 0;
  return 1;
}

static int row_is_value(const float* row, float value) {
  for (int j = 0; j < DIM; ++j)
    if (row[j] != value) return 0;
  return 1;
}

static size_t progress_calls = 0;
static void on_progress(void* user, const char* what, size_t done, size_t total) {
  (void)what;
  (void)done;
  (void)total;
  ++*(size_t*)user;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch folder>\n", argv[0]);
    return 2;
  }
  const char* scratch = argv[1];
  char folder[4096], config_path[4096], json[8192], json2[8192];
  if (mkdir(scratch, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "cannot create %s\n", scratch);
    return 2;
  }
  snprintf(folder, sizeof folder, "%s/table0", scratch);
  if (write_table(folder) != 0) {
    fprintf(stderr, "cannot write the table under %s\n", folder);
    return 2;
  }
  snprintf(json, sizeof json,
           "{\"supportlonglong\": true, \"volatile_db\": {\"type\": \"hash_map\", \"num_partitions\": 2},"
           " \"models\": [{\"model\": \"m\", \"sparse_files\": [\"%s\"], \"embedding_table_names\": [\"t0\"],"
           " \"embedding_vecsize_per_table\": [%d], \"default_value_for_each_table\": [%g]}]}",
           folder, DIM, (double)DEFAULT_VALUE);
  /* The same tables under another model name: a different config. */
  snprintf(json2, sizeof json2,
           "{\"supportlonglong\": true, \"volatile_db\": {\"type\": \"hash_map\", \"num_partitions\": 2},"
           " \"models\": [{\"model\": \"other\", \"sparse_files\": [\"%s\"], \"embedding_table_names\": [\"t0\"],"
           " \"embedding_vecsize_per_table\": [%d], \"default_value_for_each_table\": [%g]}]}",
           folder, DIM, (double)DEFAULT_VALUE);
  snprintf(config_path, sizeof config_path, "%s/ps.json", scratch);
  if (write_file(config_path, json, strlen(json)) != 0) return 2;

  /* ---- library ---- */
  CHECK(hps_abi_version() == HPS_C_ABI_VERSION);
  CHECK(hps_version() != NULL && strlen(hps_version()) > 0);
  CHECK(strcmp(hps_status_name(HPS_ERROR_CONFIG), "HPS_ERROR_CONFIG") == 0);
  CHECK(strcmp(hps_last_error(), "") == 0);
  int devices = -1;
  OK(hps_cuda_device_count(&devices));
  CHECK(devices >= 0);

  /* ---- servers: one per config, shared ---- */
  hps_server_options_t options;
  hps_server_options_init(&options);
  CHECK(options.struct_size == sizeof options);
  options.progress = on_progress;
  options.progress_user = &progress_calls;
  hps_server_t* a = NULL;
  hps_server_t* b = NULL;
  hps_server_t* c = NULL;
  hps_server_t* f = NULL;
  OK(hps_server_acquire_json(json, NULL, &options, &a));
  CHECK(a != NULL);
  CHECK(progress_calls > 0); /* this acquire built it */
  const size_t calls_after_build = progress_calls;
  OK(hps_server_acquire_json(json, NULL, &options, &b));
  CHECK(progress_calls == calls_after_build); /* shared: not built again */
  CHECK(a == b);
  const char* id_a = NULL;
  const char* id_b = NULL;
  OK(hps_server_id(a, &id_a));
  OK(hps_server_id(b, &id_b));
  CHECK(id_a != NULL && strncmp(id_a, "hps-json:", 9) == 0);
  CHECK(id_a != NULL && id_b != NULL && strcmp(id_a, id_b) == 0);

  OK(hps_server_acquire_json(json2, NULL, NULL, &c));
  CHECK(c != NULL && c != a);
  const char* id_c = NULL;
  OK(hps_server_id(c, &id_c));
  CHECK(id_c != NULL && id_a != NULL && strcmp(id_a, id_c) != 0);

  OK(hps_server_acquire_file(config_path, NULL, &f));
  const char* id_f = NULL;
  OK(hps_server_id(f, &id_f));
  CHECK(id_f != NULL && id_f[0] == '/' && strstr(id_f, "ps.json") != NULL);
  CHECK(f != a);

  /* By id: the live server of a JSON id and of a path; an unknown JSON id is NOT_FOUND. */
  hps_server_t* by_id = NULL;
  OK(hps_server_acquire_id(id_a, NULL, &by_id));
  CHECK(by_id != NULL);
  const char* id_by = NULL;
  OK(hps_server_id(by_id, &id_by));
  CHECK(strcmp(id_by, id_a) == 0);
  OK(hps_server_release(by_id));
  by_id = NULL;
  OK(hps_server_acquire_id(id_f, NULL, &by_id));
  OK(hps_server_id(by_id, &id_by));
  CHECK(strcmp(id_by, id_f) == 0);
  OK(hps_server_release(by_id));
  by_id = NULL;
  FAILS(hps_server_acquire_id("hps-json:0000", NULL, &by_id), HPS_ERROR_NOT_FOUND, "hps-json:0000");
  CHECK(by_id == NULL);
  FAILS(hps_server_acquire_id(NULL, NULL, &by_id), HPS_ERROR_INVALID_ARGUMENT, "id");

  /* A second acquire asking for other explicit options is refused, naming both values. */
  hps_server_options_t other;
  hps_server_options_init(&other);
  other.lookup_threads = 3;
  hps_server_t* refused = NULL;
  FAILS(hps_server_acquire_json(json, NULL, &other, &refused), HPS_ERROR_INVALID_ARGUMENT, "lookup_threads 3");
  CHECK(refused == NULL);

  /* struct_size: too small to hold the settings is refused; one that stops before `progress` (an
   * older caller's struct) is accepted and its missing fields are not read. */
  hps_server_options_t small;
  hps_server_options_init(&small);
  small.struct_size = sizeof(size_t);
  FAILS(hps_server_acquire_json(json, NULL, &small, &refused), HPS_ERROR_INVALID_ARGUMENT, "struct_size");
  hps_server_options_init(&small);
  small.struct_size = offsetof(hps_server_options_t, progress);
  size_t unseen_calls = 0;
  small.progress = on_progress;
  small.progress_user = &unseen_calls;
  hps_server_t* older = NULL;
  char json3[8192];
  snprintf(json3, sizeof json3, "%s", json);
  memcpy(strstr(json3, "\"model\": \"m\""), "\"model\": \"o\"", 12); /* a config not served yet */
  OK(hps_server_acquire_json(json3, NULL, &small, &older));
  CHECK(older != NULL && older != a);
  CHECK(unseen_calls == 0); /* built, but the caller's struct does not reach `progress` */
  OK(hps_server_release(older));

  int key64 = -1, gpu = -1;
  OK(hps_server_key64(a, &key64));
  CHECK(key64 == 1);
  OK(hps_server_gpu_enabled(a, &gpu));
  CHECK(gpu == 0 || gpu == 1);
  char* config_json = NULL;
  OK(hps_server_config_json(a, &config_json));
  CHECK(config_json != NULL && strstr(config_json, "\"t0\"") != NULL);
  hps_free(config_json);

  /* ---- tables ---- */
  hps_table_t t, t_by_index;
  OK(hps_table_by_name(a, "m", "t0", &t));
  OK(hps_table_by_index(a, "m", 0, &t_by_index));
  CHECK(t.model == t_by_index.model && t.table == t_by_index.table);
  size_t dim = 0;
  OK(hps_table_dim(a, t, &dim));
  CHECK(dim == DIM);

  /* ---- lookups: int64 and int32 keys, unknown keys get the default row ---- */
  int64_t keys64[4] = {1000, 1003 + 3 * 50, 7, 1000 + 3 * (ROWS - 1)};
  int32_t keys32[4] = {1000, 1003 + 3 * 50, 7, 1000 + 3 * (ROWS - 1)};
  float out[4 * DIM], out32[4 * DIM];
  OK(hps_lookup(a, t, keys64, HPS_KEY_INT64, 4, out, HPS_HOST, NULL));
  CHECK(row_is(out + 0 * DIM, keys64[0]));
  CHECK(row_is(out + 1 * DIM, keys64[1]));
  CHECK(row_is_value(out + 2 * DIM, DEFAULT_VALUE));
  CHECK(row_is(out + 3 * DIM, keys64[3]));
  OK(hps_lookup(b, t, keys32, HPS_KEY_INT32, 4, out32, HPS_HOST, NULL));
  CHECK(memcmp(out, out32, sizeof out) == 0);

  /* lookup_many over the same table twice */
  const hps_table_t tables[2] = {t, t};
  const void* many_keys[2] = {keys64, keys64 + 2};
  const size_t many_n[2] = {2, 2};
  float many0[2 * DIM], many1[2 * DIM];
  float* many_out[2] = {many0, many1};
  OK(hps_lookup_many(a, 2, tables, many_keys, HPS_KEY_INT64, many_n, many_out, HPS_HOST, NULL));
  CHECK(memcmp(many0, out, sizeof many0) == 0);
  CHECK(memcmp(many1, out + 2 * DIM, sizeof many1) == 0);

  /* ---- updates: seen through every handle of the shared server, not by another config ---- */
  int64_t new_keys[2] = {7, 1000};
  float new_rows[2 * DIM];
  for (int i = 0; i < 2 * DIM; ++i) new_rows[i] = 100.0f + (float)i;
  OK(hps_update(a, t, new_keys, HPS_KEY_INT64, 2, new_rows));
  float after[2 * DIM];
  OK(hps_lookup(b, t, new_keys, HPS_KEY_INT64, 2, after, HPS_HOST, NULL));
  CHECK(memcmp(after, new_rows, sizeof after) == 0);
  hps_table_t tc;
  OK(hps_table_by_name(c, "other", "t0", &tc));
  OK(hps_lookup(c, tc, new_keys, HPS_KEY_INT64, 2, after, HPS_HOST, NULL));
  CHECK(row_is_value(after, DEFAULT_VALUE));
  CHECK(row_is(after + DIM, 1000));

  /* ---- erase ---- */
  int64_t erase_keys[3] = {7, 1003, 123456};
  size_t erased = 0;
  OK(hps_erase(a, t, erase_keys, HPS_KEY_INT64, 3, &erased));
  CHECK(erased == 2);
  OK(hps_lookup(a, t, erase_keys, HPS_KEY_INT64, 3, out, HPS_HOST, NULL));
  CHECK(row_is_value(out, DEFAULT_VALUE) && row_is_value(out + DIM, DEFAULT_VALUE));
  OK(hps_erase(a, t, erase_keys, HPS_KEY_INT64, 3, NULL));
  OK(hps_refresh(a, "m"));

  /* ---- metrics ---- */
  char* stats = NULL;
  char* prom = NULL;
  OK(hps_stats_json(a, &stats));
  CHECK(stats != NULL && stats[0] == '[' && strstr(stats, "\"t0\"") != NULL);
  OK(hps_prometheus(a, &prom));
  CHECK(prom != NULL && strlen(prom) > 0 && strstr(prom, "t0") != NULL);
  hps_free(stats);
  hps_free(prom);
  hps_free(NULL);
  char* sources = NULL;  /* no update_source: an empty array */
  OK(hps_update_sources_json(a, &sources));
  CHECK(sources != NULL && strcmp(sources, "[]") == 0);
  hps_free(sources);

  /* ---- errors: codes and messages ---- */
  float one[DIM];
  FAILS(hps_lookup(NULL, t, keys64, HPS_KEY_INT64, 1, one, HPS_HOST, NULL), HPS_ERROR_INVALID_ARGUMENT, "server");
  FAILS(hps_lookup(a, t, NULL, HPS_KEY_INT64, 1, one, HPS_HOST, NULL), HPS_ERROR_INVALID_ARGUMENT, "'keys'");
  FAILS(hps_lookup(a, t, keys64, (hps_key_dtype_t)9, 1, one, HPS_HOST, NULL), HPS_ERROR_INVALID_ARGUMENT, "9");
  FAILS(hps_table_by_name(a, "m", "nope", &t_by_index), HPS_ERROR_NOT_FOUND, "nope");
  FAILS(hps_table_by_name(a, "nomodel", "t0", &t_by_index), HPS_ERROR_NOT_FOUND, "nomodel");
  FAILS(hps_table_by_index(a, "m", 5, &t_by_index), HPS_ERROR_NOT_FOUND, "5");
  hps_table_t bad = {0, 9};
  FAILS(hps_table_dim(a, bad, &dim), HPS_ERROR_NOT_FOUND, "");
  hps_server_t* none = NULL;
  FAILS(hps_server_acquire_json("{\"models\": [{\"model\": \"m\", \"sparse_files\": 3}]}", NULL, NULL, &none),
        HPS_ERROR_CONFIG, "models[0].embedding_vecsize_per_table");
  CHECK(none == NULL);
  FAILS(hps_server_acquire_json("{not json", NULL, NULL, &none), HPS_ERROR_CONFIG, "");
  FAILS(hps_server_acquire_file("/nonexistent/hps/ps.json", NULL, &none), HPS_ERROR_IO, "/nonexistent/hps/ps.json");
  FAILS(hps_server_acquire_file(NULL, NULL, &none), HPS_ERROR_INVALID_ARGUMENT, "path");
  FAILS(hps_server_acquire_json(json, NULL, NULL, NULL), HPS_ERROR_INVALID_ARGUMENT, "server");
  FAILS(hps_stats_json(a, NULL), HPS_ERROR_INVALID_ARGUMENT, "json");
  FAILS(hps_update_sources_json(a, NULL), HPS_ERROR_INVALID_ARGUMENT, "json");
  /* A device lookup without a CUDA device is refused. (With one, these host pointers would not be
   * device memory: the GPU path is tested by the GPU suites, not here.) */
  if (devices == 0) {
    hps_status_t st = hps_lookup(a, t, keys64, HPS_KEY_INT64, 1, one, 0, NULL);
    CHECK(st == HPS_ERROR_BACKEND_UNAVAILABLE || st == HPS_ERROR_INVALID_ARGUMENT);
    CHECK(strlen(hps_last_error()) > 0);
  }
  /* A device the model is not deployed on is refused before any device memory is touched. */
  FAILS(hps_lookup(a, t, keys64, HPS_KEY_INT64, 1, one, 5, NULL), HPS_ERROR_INVALID_ARGUMENT, "deployed_device_list");
  FAILS(hps_lookup(a, t, keys64, HPS_KEY_INT64, 1, one, -7, NULL), HPS_ERROR_INVALID_ARGUMENT, "-7");
  /* The last error stays until the next failing call. */
  OK(hps_table_dim(a, t, &dim));
  CHECK(strstr(hps_last_error(), "-7") != NULL);

  /* ---- reference counts: the last release frees; a new acquire builds again ---- */
  OK(hps_server_retain(a));
  OK(hps_server_release(a));
  OK(hps_server_release(b));
  OK(hps_lookup(a, t, keys64, HPS_KEY_INT64, 1, one, HPS_HOST, NULL)); /* a still holds it */
  OK(hps_server_release(a));
  OK(hps_server_release(NULL));
  progress_calls = 0;
  hps_server_t* again = NULL;
  OK(hps_server_acquire_json(json, NULL, &options, &again));
  CHECK(progress_calls > 0); /* rebuilt from the files: the update above is gone */
  OK(hps_lookup(again, t, new_keys, HPS_KEY_INT64, 2, after, HPS_HOST, NULL));
  CHECK(row_is_value(after, DEFAULT_VALUE));
  CHECK(row_is(after + DIM, 1000));
  OK(hps_server_release(again));
  OK(hps_server_release(c));
  OK(hps_server_release(f));

  if (failures != 0) {
    fprintf(stderr, "test_c_api: %d check(s) failed\n", failures);
    return 1;
  }
  printf("test_c_api: all checks passed (hps %s, C ABI %d)\n", hps_version(), hps_abi_version());
  return 0;
}

/* The C ABI's device path from plain C: keys and rows in CUDA memory, on the caller's stream.
 *
 * Usage: test_c_api_gpu <scratch folder>. Exits 77 (ctest: skipped) without a CUDA device.
 * Compares device lookups (int64 and int32 keys, one table and lookup_many, through a dynamic GPU
 * cache that starts half full) with host lookups of the same keys, bit for bit.
 */
#include <cuda_runtime_api.h>
#include <hps/c_api.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "c_checks.h"

#define CUDA(call)                                                                                     \
  do {                                                                                                 \
    cudaError_t e_ = (call);                                                                           \
    if (e_ != cudaSuccess) {                                                                           \
      fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));        \
      return 1;                                                                                        \
    }                                                                                                  \
  } while (0)

enum { ROWS = 4000, DIM = 8, N = 1024 };

static int write_file(const char* path, const void* data, size_t bytes) {
  FILE* f = fopen(path, "wb");
  if (f == NULL) return -1;
  size_t written = fwrite(data, 1, bytes, f);
  return (fclose(f) == 0 && written == bytes) ? 0 : -1;
}

static int64_t keys_in[ROWS];
static float rows_in[ROWS * DIM];

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int devices = 0;
  OK(hps_cuda_device_count(&devices));
  if (devices == 0) {
    printf("test_c_api_gpu: no CUDA device, skipped\n");
    return 77;
  }
  const char* scratch = argv[1];
  char folder[4096], path[4096 + 64], json[8192];
  if (mkdir(scratch, 0755) != 0 && errno != EEXIST) return 2;
  snprintf(folder, sizeof folder, "%s/table0", scratch);
  if (mkdir(folder, 0755) != 0 && errno != EEXIST) return 2;
  for (int i = 0; i < ROWS; ++i) {
    keys_in[i] = 5 * (int64_t)i - 7000;
    for (int j = 0; j < DIM; ++j) rows_in[i * DIM + j] = (float)keys_in[i] + 0.125f * (float)j;
  }
  snprintf(path, sizeof path, "%s/key", folder);
  if (write_file(path, keys_in, sizeof keys_in) != 0) return 2;
  snprintf(path, sizeof path, "%s/emb_vector", folder);
  if (write_file(path, rows_in, sizeof rows_in) != 0) return 2;
  snprintf(json, sizeof json,
           "{\"volatile_db\": {\"type\": \"hash_map\", \"num_partitions\": 2}, \"models\": [{\"model\": \"g\","
           " \"sparse_files\": [\"%s\"], \"embedding_table_names\": [\"t0\"], \"embedding_vecsize_per_table\": [%d],"
           " \"default_value_for_each_table\": [-1.0], \"gpucache\": true, \"gpucacheper\": 0.5,"
           " \"deployed_device_list\": [0]}]}",
           folder, DIM);

  hps_server_t* ps = NULL;
  OK(hps_server_acquire_json(json, NULL, NULL, &ps));
  if (ps == NULL) return 1;
  int gpu = 0;
  OK(hps_server_gpu_enabled(ps, &gpu));
  CHECK(gpu == 1);
  hps_table_t t;
  OK(hps_table_by_name(ps, "g", "t0", &t));

  /* Keys over the whole table plus some absent ones, repeated. */
  static int64_t keys64[N];
  static int32_t keys32[N];
  static float host_rows[N * DIM], dev_rows[N * DIM];
  for (int i = 0; i < N; ++i) {
    keys64[i] = (i % 7 == 0) ? 123456 + i : keys_in[(i * 37) % ROWS];
    keys32[i] = (int32_t)keys64[i];
  }
  OK(hps_lookup(ps, t, keys64, HPS_KEY_INT64, N, host_rows, HPS_HOST, NULL));

  cudaStream_t stream;
  CUDA(cudaSetDevice(0));
  CUDA(cudaStreamCreate(&stream));
  void* d_keys64 = NULL;
  void* d_keys32 = NULL;
  float* d_rows = NULL;
  float* d_rows2 = NULL;
  CUDA(cudaMalloc(&d_keys64, sizeof keys64));
  CUDA(cudaMalloc(&d_keys32, sizeof keys32));
  CUDA(cudaMalloc((void**)&d_rows, sizeof dev_rows));
  CUDA(cudaMalloc((void**)&d_rows2, sizeof dev_rows));
  CUDA(cudaMemcpy(d_keys64, keys64, sizeof keys64, cudaMemcpyHostToDevice));
  CUDA(cudaMemcpy(d_keys32, keys32, sizeof keys32, cudaMemcpyHostToDevice));

  for (int round = 0; round < 3; ++round) { /* the first misses partly, later ones hit the cache */
    CUDA(cudaMemsetAsync(d_rows, 0, sizeof dev_rows, stream));
    OK(hps_lookup(ps, t, d_keys64, HPS_KEY_INT64, N, d_rows, 0, (void*)stream));
    CUDA(cudaMemcpyAsync(dev_rows, d_rows, sizeof dev_rows, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaStreamSynchronize(stream));
    CHECK(memcmp(dev_rows, host_rows, sizeof dev_rows) == 0);

    OK(hps_lookup(ps, t, d_keys32, HPS_KEY_INT32, N, d_rows, 0, (void*)stream));
    CUDA(cudaMemcpyAsync(dev_rows, d_rows, sizeof dev_rows, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaStreamSynchronize(stream));
    CHECK(memcmp(dev_rows, host_rows, sizeof dev_rows) == 0);
  }

  /* lookup_many: the two halves of the keys side by side. */
  const hps_table_t tables[2] = {t, t};
  const void* many_keys[2] = {d_keys64, (const int64_t*)d_keys64 + N / 2};
  const size_t many_n[2] = {N / 2, N / 2};
  float* many_out[2] = {d_rows, d_rows2};
  OK(hps_lookup_many(ps, 2, tables, many_keys, HPS_KEY_INT64, many_n, many_out, 0, (void*)stream));
  CUDA(cudaMemcpyAsync(dev_rows, d_rows, sizeof dev_rows / 2, cudaMemcpyDeviceToHost, stream));
  CUDA(cudaMemcpyAsync(dev_rows + N / 2 * DIM, d_rows2, sizeof dev_rows / 2, cudaMemcpyDeviceToHost, stream));
  CUDA(cudaStreamSynchronize(stream));
  CHECK(memcmp(dev_rows, host_rows, sizeof dev_rows) == 0);

  /* An update is seen by the next device lookup. */
  float new_row[DIM];
  for (int j = 0; j < DIM; ++j) new_row[j] = 42.0f + (float)j;
  OK(hps_update(ps, t, &keys64[1], HPS_KEY_INT64, 1, new_row));
  OK(hps_lookup(ps, t, d_keys64, HPS_KEY_INT64, N, d_rows, 0, (void*)stream));
  CUDA(cudaMemcpyAsync(dev_rows, d_rows, sizeof dev_rows, cudaMemcpyDeviceToHost, stream));
  CUDA(cudaStreamSynchronize(stream));
  for (int i = 0; i < N; ++i) {
    const float* want = keys64[i] == keys64[1] ? new_row : host_rows + i * DIM;
    if (memcmp(dev_rows + i * DIM, want, sizeof new_row) != 0) {
      fprintf(stderr, "row %d (key %lld) differs after the update\n", i, (long long)keys64[i]);
      ++failures;
      break;
    }
  }

  cudaFree(d_keys64);
  cudaFree(d_keys32);
  cudaFree(d_rows);
  cudaFree(d_rows2);
  cudaStreamDestroy(stream);
  OK(hps_server_release(ps));
  if (failures != 0) {
    fprintf(stderr, "test_c_api_gpu: %d check(s) failed\n", failures);
    return 1;
  }
  printf("test_c_api_gpu: all checks passed\n");
  return 0;
}

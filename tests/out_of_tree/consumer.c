/* Looks up one key through the C ABI of an installed hps and prints its row.
 * Usage: consumer <config.json> <model> <table> <key>
 * Prints "hps <version> row <key>: v0 v1 ..." (each %.9g), or the error and exits 1. */
#include <hps/c_api.h>

#include <stdio.h>
#include <stdlib.h>

static int fail(const char* what, hps_status_t st) {
  fprintf(stderr, "%s: %s: %s\n", what, hps_status_name(st), hps_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s <config.json> <model> <table> <key>\n", argv[0]);
    return 2;
  }
  if (hps_abi_version() != HPS_C_ABI_VERSION) {
    fprintf(stderr, "ABI %d, built for %d\n", hps_abi_version(), HPS_C_ABI_VERSION);
    return 1;
  }
  hps_server_t* server = NULL;
  hps_status_t st = hps_server_acquire_file(argv[1], NULL, &server);
  if (st != HPS_OK) return fail("acquire", st);
  hps_table_t table;
  size_t dim = 0;
  if ((st = hps_table_by_name(server, argv[2], argv[3], &table)) != HPS_OK) return fail("table", st);
  if ((st = hps_table_dim(server, table, &dim)) != HPS_OK) return fail("dim", st);
  int64_t key = strtoll(argv[4], NULL, 10);
  float* row = malloc(dim * sizeof *row);
  if (row == NULL) return 1;
  if ((st = hps_lookup(server, table, &key, HPS_KEY_INT64, 1, row, HPS_HOST, NULL)) != HPS_OK) return fail("lookup", st);
  printf("hps %s row %lld:", hps_version(), (long long)key);
  for (size_t j = 0; j < dim; ++j) printf(" %.9g", row[j]);
  printf("\n");
  free(row);
  hps_server_release(server);
  return 0;
}

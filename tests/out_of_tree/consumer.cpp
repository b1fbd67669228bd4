// The C ABI from C++: one lookup, printed like consumer.c. Usage: consumer_cxx <config> <model> <table> <key>
#include <hps/c_api.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  hps_server_t* server = nullptr;
  hps_table_t table{};
  std::size_t dim = 0;
  if (hps_server_acquire_file(argv[1], nullptr, &server) != HPS_OK ||
      hps_table_by_name(server, argv[2], argv[3], &table) != HPS_OK || hps_table_dim(server, table, &dim) != HPS_OK) {
    std::fprintf(stderr, "error: %s\n", hps_last_error());
    return 1;
  }
  const std::int64_t key = std::stoll(argv[4]);
  std::vector<float> row(dim);
  if (hps_lookup(server, table, &key, HPS_KEY_INT64, 1, row.data(), HPS_HOST, nullptr) != HPS_OK) {
    std::fprintf(stderr, "error: %s\n", hps_last_error());
    return 1;
  }
  std::printf("hps %s row %lld:", hps_version(), static_cast<long long>(key));
  for (float v : row) std::printf(" %.9g", v);
  std::printf("\n");
  hps_server_release(server);
  return 0;
}

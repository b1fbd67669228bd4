// Tests of the configuration parser (core/src/config.cpp).
//
// Expectations are written out here as literals (defaults, messages, paths), not taken from the
// parser, so a change of behaviour fails a test. The last tests check that the JSON Schema names
// every key and that the key tables in docs/configuration.md are the ones the schema gives.
#include "hps/config.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "hps/error.hpp"

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;
using namespace hps;

fs::path data_dir() {
#ifdef HPS_TEST_DATA_DIR
  return fs::absolute(HPS_TEST_DATA_DIR);
#else
  return fs::absolute(fs::path(__FILE__).parent_path().parent_path() / "data");
#endif
}

fs::path docs_file() {
  return (data_dir().parent_path().parent_path() / "docs" / "configuration.md").lexically_normal();
}

std::string normal(const fs::path& p) { return p.lexically_normal().string(); }

/// The smallest valid config: one model with two tables.
Json minimal_json() {
  return Json::parse(R"({
    "models": [{"model": "m", "sparse_files": ["t0", "t1"], "embedding_vecsize_per_table": [4, 8]}]
  })");
}

/// "/models/0/gpucacheper" -> "models[0].gpucacheper", written independently of the parser.
std::string path_of(const std::string& pointer) {
  std::string path;
  std::stringstream parts(pointer.substr(1));
  for (std::string part; std::getline(parts, part, '/');) {
    if (!part.empty() && std::isdigit(static_cast<unsigned char>(part[0])))
      path += "[" + part + "]";
    else
      path += (path.empty() ? "" : ".") + part;
  }
  return path;
}

/// The minimal config with the value at `pointer` set (objects on the way are created).
std::string with(const std::string& pointer, const Json& value, Json base = minimal_json()) {
  base[Json::json_pointer(pointer)] = value;
  return base.dump();
}

Config parse(const std::string& text, const std::string& base_dir = "") {
  return parse_config(text, "config.json", base_dir);
}

/// The message of the ConfigError that parsing `text` throws ("" and a test failure if none).
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ConfigError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Field-by-field equality of two configs, warnings excepted.
void expect_same(const VolatileDbConfig& a, const VolatileDbConfig& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.address, b.address);
  EXPECT_EQ(a.user_name, b.user_name);
  EXPECT_EQ(a.password, b.password);
  EXPECT_EQ(a.num_partitions, b.num_partitions);
  EXPECT_EQ(a.allocation_rate, b.allocation_rate);
  EXPECT_EQ(a.shared_memory_size, b.shared_memory_size);
  EXPECT_EQ(a.shared_memory_name, b.shared_memory_name);
  EXPECT_EQ(a.shared_memory_auto_remove, b.shared_memory_auto_remove);
  EXPECT_EQ(a.num_node_connections, b.num_node_connections);
  EXPECT_EQ(a.max_batch_size, b.max_batch_size);
  EXPECT_EQ(a.enable_tls, b.enable_tls);
  EXPECT_EQ(a.tls_ca_certificate, b.tls_ca_certificate);
  EXPECT_EQ(a.tls_client_certificate, b.tls_client_certificate);
  EXPECT_EQ(a.tls_client_key, b.tls_client_key);
  EXPECT_EQ(a.tls_server_name_identification, b.tls_server_name_identification);
  EXPECT_EQ(a.operation_timeout_ms, b.operation_timeout_ms);
  EXPECT_EQ(a.refresh_time_after_fetch, b.refresh_time_after_fetch);
  EXPECT_EQ(a.overflow_margin, b.overflow_margin);
  EXPECT_EQ(a.overflow_policy, b.overflow_policy);
  EXPECT_EQ(a.overflow_resolution_target, b.overflow_resolution_target);
  EXPECT_EQ(a.initial_cache_rate, b.initial_cache_rate);
  EXPECT_EQ(a.cache_missed_embeddings, b.cache_missed_embeddings);
  EXPECT_EQ(a.update_filters, b.update_filters);
  EXPECT_EQ(a.initialize_after_startup, b.initialize_after_startup);
}

void expect_same(const PersistentDbConfig& a, const PersistentDbConfig& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.num_threads, b.num_threads);
  EXPECT_EQ(a.read_only, b.read_only);
  EXPECT_EQ(a.max_batch_size, b.max_batch_size);
  EXPECT_EQ(a.update_filters, b.update_filters);
  EXPECT_EQ(a.initialize_after_startup, b.initialize_after_startup);
  EXPECT_EQ(a.block_cache_size, b.block_cache_size);
  EXPECT_EQ(a.memtable_size, b.memtable_size);
}

void expect_same(const UpdateSourceConfig& a, const UpdateSourceConfig& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.brokers, b.brokers);
  EXPECT_EQ(a.metadata_refresh_interval_ms, b.metadata_refresh_interval_ms);
  EXPECT_EQ(a.receive_buffer_size, b.receive_buffer_size);
  EXPECT_EQ(a.poll_timeout_ms, b.poll_timeout_ms);
  EXPECT_EQ(a.max_batch_size, b.max_batch_size);
  EXPECT_EQ(a.failure_backoff_ms, b.failure_backoff_ms);
  EXPECT_EQ(a.max_commit_interval, b.max_commit_interval);
}

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.name, b.name);
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (std::size_t i = 0; i < a.tables.size(); ++i) {
    SCOPED_TRACE("table " + std::to_string(i));
    EXPECT_EQ(a.tables[i].name, b.tables[i].name);
    EXPECT_EQ(a.tables[i].sparse_file, b.tables[i].sparse_file);
    EXPECT_EQ(a.tables[i].dim, b.tables[i].dim);
    EXPECT_EQ(a.tables[i].default_value, b.tables[i].default_value);
    EXPECT_EQ(a.tables[i].max_query_per_sample, b.tables[i].max_query_per_sample);
    EXPECT_EQ(a.tables[i].cache_dtype, b.tables[i].cache_dtype);
  }
  EXPECT_EQ(a.max_batch_size, b.max_batch_size);
  EXPECT_EQ(a.gpucache, b.gpucache);
  EXPECT_EQ(a.hit_rate_threshold, b.hit_rate_threshold);
  EXPECT_EQ(a.gpucacheper, b.gpucacheper);
  EXPECT_EQ(a.cache_refresh_percentage_per_iteration, b.cache_refresh_percentage_per_iteration);
  EXPECT_EQ(a.deployed_device_list, b.deployed_device_list);
  EXPECT_EQ(a.embedding_cache_type, b.embedding_cache_type);
  EXPECT_EQ(a.init_ec, b.init_ec);
  EXPECT_EQ(a.enable_pagelock, b.enable_pagelock);
  EXPECT_EQ(a.fp8_quant, b.fp8_quant);
  EXPECT_EQ(a.dense_file, b.dense_file);
  EXPECT_EQ(a.num_of_worker_buffer_in_pool, b.num_of_worker_buffer_in_pool);
  EXPECT_EQ(a.num_of_refresher_buffer_in_pool, b.num_of_refresher_buffer_in_pool);
  EXPECT_EQ(a.thread_pool_size, b.thread_pool_size);
  EXPECT_EQ(a.maxnum_des_feature_per_sample, b.maxnum_des_feature_per_sample);
  EXPECT_EQ(a.refresh_delay, b.refresh_delay);
  EXPECT_EQ(a.refresh_interval, b.refresh_interval);
  EXPECT_EQ(a.use_context_stream, b.use_context_stream);
  EXPECT_EQ(a.use_hctr_cache_implementation, b.use_hctr_cache_implementation);
  EXPECT_EQ(a.fuse_embedding_table, b.fuse_embedding_table);
}

void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(a.supportlonglong, b.supportlonglong);
  EXPECT_EQ(a.fuse_embedding_table, b.fuse_embedding_table);
  EXPECT_EQ(a.base_dir, b.base_dir);
  {
    SCOPED_TRACE("volatile_db");
    expect_same(a.volatile_db, b.volatile_db);
  }
  {
    SCOPED_TRACE("persistent_db");
    expect_same(a.persistent_db, b.persistent_db);
  }
  {
    SCOPED_TRACE("update_source");
    expect_same(a.update_source, b.update_source);
  }
  ASSERT_EQ(a.models.size(), b.models.size());
  for (std::size_t i = 0; i < a.models.size(); ++i) {
    SCOPED_TRACE("model " + std::to_string(i));
    expect_same(a.models[i], b.models[i]);
  }
}

// ---------------------------------------------------------------------------------------------

TEST(Config, MinimalConfigHasTheDocumentedDefaults) {
  const Config c = parse(minimal_json().dump());
  const fs::path cwd = fs::current_path();
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.base_dir, "");
  EXPECT_TRUE(c.supportlonglong);
  EXPECT_FALSE(c.fuse_embedding_table);

  const VolatileDbConfig& v = c.volatile_db;
  EXPECT_EQ(v.type, VolatileDbType::kHashMap);
  EXPECT_EQ(v.address, "127.0.0.1:7000");
  EXPECT_EQ(v.user_name, "default");
  EXPECT_EQ(v.password, "");
  const std::size_t cores = std::thread::hardware_concurrency();
  EXPECT_EQ(v.num_partitions, cores == 0 ? 1 : std::min<std::size_t>(16, cores));
  EXPECT_EQ(v.allocation_rate, 268435456u);
  EXPECT_EQ(v.shared_memory_size, 17179869184u);
  EXPECT_EQ(v.shared_memory_name, "hctr_mp_hash_map_database");
  EXPECT_TRUE(v.shared_memory_auto_remove);
  EXPECT_EQ(v.num_node_connections, 5u);
  EXPECT_EQ(v.max_batch_size, 65536u);
  EXPECT_FALSE(v.enable_tls);
  EXPECT_EQ(v.tls_ca_certificate, "cacertbundle.crt");
  EXPECT_EQ(v.tls_client_certificate, "client_cert.pem");
  EXPECT_EQ(v.tls_client_key, "client_key.pem");
  EXPECT_EQ(v.tls_server_name_identification, "redis.localhost");
  EXPECT_EQ(v.overflow_margin, std::numeric_limits<std::size_t>::max());
  EXPECT_EQ(v.overflow_policy, OverflowPolicy::kEvictRandom);
  EXPECT_EQ(v.overflow_resolution_target, 0.8);
  EXPECT_EQ(v.initial_cache_rate, 1.0);
  EXPECT_FALSE(v.cache_missed_embeddings);
  EXPECT_EQ(v.update_filters, std::vector<std::string>{".+"});
  EXPECT_TRUE(v.initialize_after_startup);

  const PersistentDbConfig& p = c.persistent_db;
  EXPECT_EQ(p.type, PersistentDbType::kDisabled);
  EXPECT_EQ(p.path, normal(fs::temp_directory_path() / "rocksdb"));
  EXPECT_EQ(p.num_threads, 16u);
  EXPECT_FALSE(p.read_only);
  EXPECT_EQ(p.max_batch_size, 65536u);
  EXPECT_EQ(p.update_filters, std::vector<std::string>{".+"});
  EXPECT_TRUE(p.initialize_after_startup);
  EXPECT_EQ(p.block_cache_size, 268435456u);
  EXPECT_EQ(p.memtable_size, 67108864u);

  const UpdateSourceConfig& u = c.update_source;
  EXPECT_EQ(u.type, UpdateSourceType::kNone);
  EXPECT_EQ(u.brokers, "127.0.0.1:9092");
  EXPECT_EQ(u.metadata_refresh_interval_ms, 30000u);
  EXPECT_EQ(u.receive_buffer_size, 262144u);
  EXPECT_EQ(u.poll_timeout_ms, 500u);
  EXPECT_EQ(u.max_batch_size, 8192u);
  EXPECT_EQ(u.failure_backoff_ms, 50u);
  EXPECT_EQ(u.max_commit_interval, 32u);

  ASSERT_EQ(c.models.size(), 1u);
  const ModelConfig& m = c.models[0];
  EXPECT_EQ(m.name, "m");
  ASSERT_EQ(m.tables.size(), 2u);
  EXPECT_EQ(m.tables[0].name, "sparse_embedding0");
  EXPECT_EQ(m.tables[1].name, "sparse_embedding1");
  EXPECT_EQ(m.tables[0].sparse_file, normal(cwd / "t0"));
  EXPECT_EQ(m.tables[1].sparse_file, normal(cwd / "t1"));
  EXPECT_EQ(m.tables[0].dim, 4u);
  EXPECT_EQ(m.tables[1].dim, 8u);
  for (const TableConfig& t : m.tables) {
    EXPECT_EQ(t.default_value, 0.0f);
    EXPECT_EQ(t.max_query_per_sample, 0u);
    EXPECT_EQ(t.cache_dtype, CacheDtype::kFloat32);
  }
  EXPECT_EQ(m.max_batch_size, 64u);
  EXPECT_TRUE(m.gpucache);
  EXPECT_EQ(m.hit_rate_threshold, 0.9);
  EXPECT_EQ(m.gpucacheper, 0.2);
  EXPECT_EQ(m.cache_refresh_percentage_per_iteration, 0.0);
  EXPECT_EQ(m.deployed_device_list, std::vector<int>{0});
  EXPECT_EQ(m.embedding_cache_type, EmbeddingCacheType::kDynamic);
  EXPECT_TRUE(m.init_ec);
  EXPECT_FALSE(m.enable_pagelock);
  EXPECT_FALSE(m.fp8_quant);
  EXPECT_EQ(m.dense_file, "");
  EXPECT_EQ(m.num_of_worker_buffer_in_pool, 1u);
  EXPECT_EQ(m.num_of_refresher_buffer_in_pool, 1u);
  EXPECT_EQ(m.thread_pool_size, 16u);
  EXPECT_EQ(m.maxnum_des_feature_per_sample, 26u);
  EXPECT_EQ(m.refresh_delay, 0.0);
  EXPECT_EQ(m.refresh_interval, 0.0);
  EXPECT_TRUE(m.use_context_stream);
  EXPECT_TRUE(m.use_hctr_cache_implementation);
  EXPECT_FALSE(m.fuse_embedding_table);
}

// A Redis Cluster's tables outlive the machine that writes them: their default partition count is
// fixed, not this machine's cores (HugeCTR's was, so a 2-core server split a table in 2 and a
// 64-core one in 16); a hash map keeps the core-count default, and a given count is kept.
TEST(Config, RedisPartitionsDefaultToAFixedCount) {
  const std::size_t cores = std::thread::hardware_concurrency();
  const std::size_t machine = cores == 0 ? 1 : std::min<std::size_t>(16, cores);
  Json redis = minimal_json();
  redis["volatile_db"] = {{"type", "redis_cluster"}, {"address", "a:1"}};
  EXPECT_EQ(parse(redis.dump()).volatile_db.num_partitions, hps::kRedisPartitions);
  EXPECT_EQ(hps::kRedisPartitions, 16u);
  redis["volatile_db"]["num_partitions"] = 3;
  EXPECT_EQ(parse(redis.dump()).volatile_db.num_partitions, 3u);
  Json hash_map = minimal_json();
  hash_map["volatile_db"] = {{"type", "hash_map"}};
  EXPECT_EQ(parse(hash_map.dump()).volatile_db.num_partitions, machine);
  EXPECT_EQ(parse(minimal_json().dump()).volatile_db.num_partitions, machine);
}

TEST(Config, HugeCtrExampleParsesWithExpectedValuesAndWarnings) {
  const fs::path dir = data_dir();
  const std::string file = (dir / "hugectr_config.json").string();
  const Config c = load_config_file(file);
  EXPECT_EQ(c.base_dir, normal(dir));
  EXPECT_TRUE(c.supportlonglong);

  EXPECT_EQ(c.volatile_db.type, VolatileDbType::kRedisCluster);
  EXPECT_EQ(c.volatile_db.address, "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002");
  EXPECT_EQ(c.volatile_db.num_partitions, 8u);
  EXPECT_EQ(c.volatile_db.allocation_rate, 268435456u);
  EXPECT_EQ(c.volatile_db.num_node_connections, 4u);
  EXPECT_EQ(c.volatile_db.max_batch_size, 100000u);
  EXPECT_EQ(c.volatile_db.overflow_margin, 10000000u);
  EXPECT_EQ(c.volatile_db.overflow_policy, OverflowPolicy::kEvictOldest);
  EXPECT_EQ(c.volatile_db.overflow_resolution_target, 0.8);
  EXPECT_TRUE(c.volatile_db.cache_missed_embeddings);
  EXPECT_EQ(c.volatile_db.update_filters, std::vector<std::string>{".+"});

  EXPECT_EQ(c.persistent_db.type, PersistentDbType::kRocksDb);
  EXPECT_EQ(c.persistent_db.path, normal(dir / "rocksdb" / "wdl_dcn"));
  EXPECT_EQ(c.persistent_db.num_threads, 8u);
  EXPECT_FALSE(c.persistent_db.read_only);
  EXPECT_EQ(c.persistent_db.max_batch_size, 10000u);

  EXPECT_EQ(c.update_source.type, UpdateSourceType::kKafka);
  EXPECT_EQ(c.update_source.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.update_source.receive_buffer_size, 2097152u);
  EXPECT_EQ(c.update_source.poll_timeout_ms, 500u);
  EXPECT_EQ(c.update_source.max_batch_size, 1000u);
  EXPECT_EQ(c.update_source.failure_backoff_ms, 50u);
  EXPECT_EQ(c.update_source.max_commit_interval, 32u);

  ASSERT_EQ(c.models.size(), 2u);
  const ModelConfig& wdl = c.models[0];
  EXPECT_EQ(wdl.name, "wdl");
  ASSERT_EQ(wdl.tables.size(), 2u);
  EXPECT_EQ(wdl.tables[0].name, "sparse_embedding2");
  EXPECT_EQ(wdl.tables[1].name, "sparse_embedding1");
  EXPECT_EQ(wdl.tables[0].sparse_file, normal(dir / "wdl" / "0_sparse_2000.model"));
  EXPECT_EQ(wdl.tables[1].sparse_file, normal(dir / "wdl" / "1_sparse_2000.model"));
  EXPECT_EQ(wdl.tables[0].dim, 1u);
  EXPECT_EQ(wdl.tables[1].dim, 16u);
  EXPECT_EQ(wdl.tables[0].max_query_per_sample, 2u);
  EXPECT_EQ(wdl.tables[1].max_query_per_sample, 26u);
  EXPECT_EQ(wdl.deployed_device_list, (std::vector<int>{0, 1}));
  EXPECT_EQ(wdl.max_batch_size, 1024u);
  EXPECT_EQ(wdl.num_of_worker_buffer_in_pool, 4u);
  EXPECT_EQ(wdl.gpucacheper, 0.5);
  EXPECT_EQ(wdl.cache_refresh_percentage_per_iteration, 0.2);
  EXPECT_EQ(wdl.dense_file, "wdl/_dense_2000.model");  // compatibility only: left as written
  EXPECT_EQ(c.find_model("wdl"), &c.models[0]);

  const ModelConfig& dcn = c.models[1];
  EXPECT_EQ(dcn.name, "dcn");
  ASSERT_EQ(dcn.tables.size(), 3u);
  EXPECT_EQ(dcn.tables[0].sparse_file, "/models/dcn/0_sparse_file.model");
  EXPECT_EQ(dcn.tables[2].sparse_file, normal(dir / "dcn" / "2_sparse_file.model"));
  EXPECT_EQ(dcn.tables[2].name, "sparse_embedding2");
  EXPECT_EQ(dcn.tables[2].dim, 128u);
  for (const TableConfig& t : dcn.tables) EXPECT_EQ(t.default_value, 0.5f);  // one value for all
  EXPECT_EQ(dcn.tables[1].max_query_per_sample, 1u);
  EXPECT_EQ(dcn.hit_rate_threshold, 1.1);
  EXPECT_EQ(dcn.embedding_cache_type, EmbeddingCacheType::kDynamic);  // "uvm"
  EXPECT_EQ(dcn.maxnum_des_feature_per_sample, 13u);
  EXPECT_EQ(c.find_model("dcn"), &c.models[1]);
  EXPECT_EQ(c.find_model("nope"), nullptr);

  const std::string does_nothing = ": accepted for HugeCTR compatibility but does nothing here: ";
  const std::string buffers = "buffers are sized by each call";
  const std::string dense = "the dense network is not the parameter server's business";
  const std::string timer = "there is no refresh timer: call refresh()";
  const std::vector<std::string> expected = {
      file + ": fuse_embedding_table" + does_nothing + "each table is looked up independently, no fusion is needed",
      file + ": models[0].maxnum_catfeature_query_per_table_per_sample" + does_nothing + buffers,
      file + ": models[0].max_batch_size" + does_nothing + buffers,
      file + ": models[0].num_of_worker_buffer_in_pool" + does_nothing + buffers,
      file + ": models[0].num_of_refresher_buffer_in_pool" + does_nothing + buffers,
      file + ": models[0].dense_file" + does_nothing + dense,
      file + ": models[1].embedding_cache_type: \"uvm\" is served by the dynamic GPU cache here: rows that do "
             "not fit in the cache stay in the CPU-memory tier instead of unified memory",
      file + ": models[1].maxnum_catfeature_query_per_table_per_sample" + does_nothing + buffers,
      file + ": models[1].max_batch_size" + does_nothing + buffers,
      file + ": models[1].num_of_worker_buffer_in_pool" + does_nothing + buffers,
      file + ": models[1].thread_pool_size" + does_nothing + "the server sizes its own threads",
      file + ": models[1].dense_file" + does_nothing + dense,
      file + ": models[1].maxnum_des_feature_per_sample" + does_nothing + dense,
      file + ": models[1].refresh_delay" + does_nothing + timer,
      file + ": models[1].refresh_interval" + does_nothing + timer,
      file + ": models[1].use_context_stream" + does_nothing + "the caller's stream is always used",
  };
  EXPECT_EQ(c.warnings, expected);
}

TEST(Config, UnknownKeysSuggestTheClosestValidKey) {
  Json typo = minimal_json();
  typo["peristent_db"] = Json::object();
  EXPECT_EQ(error_of(typo.dump()), "config.json: peristent_db: unknown key; did you mean 'persistent_db'?");

  Json two = minimal_json();
  two["models"].push_back(minimal_json()["models"][0]);
  two["models"][1]["model"] = "second";
  two["models"][1]["gpucacheperr"] = 0.5;
  EXPECT_EQ(error_of(two.dump()), "config.json: models[1].gpucacheperr: unknown key; did you mean 'gpucacheper'?");

  EXPECT_EQ(error_of(with("/volatile_db/overflow_polcy", "oldest")),
            "config.json: volatile_db.overflow_polcy: unknown key; did you mean 'overflow_policy'?");
  EXPECT_EQ(error_of(with("/update_source/broker", "h:1")),
            "config.json: update_source.broker: unknown key; did you mean 'brokers'?");

  // Nothing close: the valid keys are listed instead.
  const std::string far = error_of(with("/persistent_db/zzzzzzzzzz", 1));
  EXPECT_EQ(far, "config.json: persistent_db.zzzzzzzzzz: unknown key; valid keys here: type, path, num_threads, "
                 "read_only, max_batch_size, update_filters, initialize_after_startup, block_cache_size, "
                 "memtable_size");
  // The dense-network keys Triton configs carry are accepted (with a warning), so a misspelling
  // of one is pointed at it.
  EXPECT_EQ(error_of(with("/models/0/network_files", "x.json")),
            "config.json: models[0].network_files: unknown key; did you mean 'network_file'?");
}

TEST(Config, WrongTypesNameThePathTheExpectedTypeAndWhatWasFound) {
  struct Case {
    std::string pointer;
    Json value;
    std::string message;  // after "config.json: <path>: "
  };
  const std::string byte_size = "expected a byte size (an integer >= 1 or a string such as \"256MiB\"), found ";
  const std::vector<Case> cases = {
      {"/supportlonglong", "yes", "expected a boolean, found \"yes\""},
      {"/supportlonglong", 1, "expected a boolean, found 1"},
      {"/models/0/gpucache", nullptr, "expected a boolean, found null"},
      {"/volatile_db/address", 5, "expected a string, found 5"},
      {"/volatile_db/num_partitions", 1.5, "expected an integer >= 1, found 1.5"},
      {"/volatile_db/num_partitions", -3, "expected an integer >= 1, found -3"},
      {"/volatile_db/num_partitions", "8", "expected an integer >= 1, found \"8\""},
      {"/update_source/poll_timeout_ms", true, "expected an integer >= 0, found true"},
      {"/update_source/poll_timeout_ms", -1, "expected an integer >= 0, found -1"},
      {"/models/0/num_of_worker_buffer_in_pool", 2.5, "expected an integer >= 0, found 2.5"},
      {"/models/0/gpucacheper", "0.5", "expected a number in (0, 1], found \"0.5\""},
      {"/models/0/hit_rate_threshold", Json::array({1}), "expected a number >= 0, found an array"},
      {"/models/0/refresh_delay", "soon", "expected a number, found \"soon\""},
      {"/volatile_db/allocation_rate", "12XB", byte_size + "\"12XB\""},
      {"/volatile_db/allocation_rate", -1, byte_size + "-1"},
      {"/volatile_db/allocation_rate", 1.5, byte_size + "1.5"},
      {"/volatile_db/allocation_rate", true, byte_size + "true"},
      {"/persistent_db/block_cache_size", "16 furlongs", byte_size + "\"16 furlongs\""},
      {"/persistent_db/block_cache_size", -1, byte_size + "-1"},
      {"/persistent_db/block_cache_size", nullptr, byte_size + "null"},
      {"/volatile_db/update_filters", "x", "expected an array of regular expressions, found \"x\""},
      {"/volatile_db/update_filters/0", 5, "expected a regular expression, found 5"},
      {"/models/0/sparse_files/1", "", "expected a non-empty string, found \"\""},
      {"/models/0/sparse_files", "t0", "expected a non-empty array of non-empty strings, found \"t0\""},
      {"/persistent_db/path", "", "expected a non-empty string, found \"\""},
      {"/models/0/model", "a b",
       "expected a name of 1 to 120 characters from A-Z, a-z, 0-9, '_' and '-', found \"a b\""},
      {"/models/0/model", "", "expected a name of 1 to 120 characters from A-Z, a-z, 0-9, '_' and '-', found \"\""},
      {"/models/0/model", std::string(121, 'a'),
       "expected a name of 1 to 120 characters from A-Z, a-z, 0-9, '_' and '-', found \"" + std::string(57, 'a') +
           "...\""},
      {"/models/0/embedding_table_names", "t",
       "expected a non-empty array of names of 1 to 120 characters from A-Z, a-z, 0-9, '_' and '-', found \"t\""},
      {"/models/0/embedding_vecsize_per_table", Json::array(),
       "expected a non-empty array of integers in [1, 1048576], found an empty array"},
      {"/models/0/embedding_vecsize_per_table", Json::object(),
       "expected a non-empty array of integers in [1, 1048576], found an object"},
      {"/models/0/deployed_device_list", Json::array(),
       "expected a non-empty array of integers in [0, 2147483647], found an empty array"},
      {"/models/0/default_value_for_each_table", 0.5, "expected a non-empty array of numbers in "
                                                      "(-3.40282e+38, 3.40282e+38), found 0.5"},
      {"/models/0/embedding_cache_dtype", 5, "expected one of \"float32\", \"float16\", or an array of them, found 5"},
      {"/volatile_db/type", 5, "expected one of \"disabled\", \"hash_map\", \"redis_cluster\" (also accepted: "
                               "\"disable\", \"none\", \"hashmap\", \"hash\", \"map\", \"parallel_hash_map\", "
                               "\"parallel_hashmap\", \"parallel_hash\", \"parallel_map\", \"redis\"), found 5"},
      {"/volatile_db", Json::array(), "expected an object, found an empty array"},
      {"/persistent_db", Json::array({1}), "expected an object, found an array"},
      {"/persistent_db", "rocks_db", "expected an object, found \"rocks_db\""},
      {"/update_source", nullptr, "expected an object, found null"},
      {"/models", Json::object(), "expected a non-empty array of objects, found an object"},
      {"/models", Json::array(), "expected a non-empty array of objects, found an empty array"},
      {"/models/0", 5, "expected an object, found 5"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.pointer + " = " + c.value.dump());
    EXPECT_EQ(error_of(with(c.pointer, c.value)), "config.json: " + path_of(c.pointer) + ": " + c.message);
  }
  EXPECT_EQ(error_of(with("/models/0/embedding_table_names", Json::array({"ok", "not.ok"}))),
            "config.json: models[0].embedding_table_names[1]: expected a name of 1 to 120 characters from A-Z, "
            "a-z, 0-9, '_' and '-', found \"not.ok\"");
  EXPECT_EQ(error_of("[1, 2]"), "config.json: expected an object, found an array");
  EXPECT_EQ(error_of("{}"), "config.json: models: required key is missing");
  Json no_files = minimal_json();
  no_files["models"][0].erase("sparse_files");
  EXPECT_EQ(error_of(no_files.dump()), "config.json: models[0].sparse_files: required key is missing");
  Json no_dims = minimal_json();
  no_dims["models"][0].erase("embedding_vecsize_per_table");
  EXPECT_EQ(error_of(no_dims.dump()), "config.json: models[0].embedding_vecsize_per_table: required key is missing");
  Json no_name = minimal_json();
  no_name["models"][0].erase("model");
  EXPECT_EQ(error_of(no_name.dump()), "config.json: models[0].model: required key is missing");
}

TEST(Config, EveryRangeIsCheckedAtItsBounds) {
  struct Case {
    std::string pointer;
    std::vector<Json> good;
    std::vector<std::pair<Json, std::string>> bad;  // value, "found ..." text
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"/models/0/hit_rate_threshold", {0, 0.5, 1, 1.5, 100}, {{-0.1, "-0.1"}}, "a number >= 0"},
      {"/models/0/gpucacheper", {1e-9, 0.5, 1}, {{0, "0"}, {1.5, "1.5"}, {-1, "-1"}}, "a number in (0, 1]"},
      {"/models/0/cache_refresh_percentage_per_iteration", {0, 1}, {{-0.01, "-0.01"}, {1.01, "1.01"}},
       "a number in [0, 1]"},
      {"/volatile_db/overflow_resolution_target", {0.01, 1}, {{0, "0"}, {1.1, "1.1"}}, "a number in (0, 1]"},
      {"/volatile_db/initial_cache_rate", {0, 1}, {{-0.5, "-0.5"}, {2, "2"}}, "a number in [0, 1]"},
      {"/volatile_db/overflow_margin", {1, 18446744073709551615ull}, {{0, "0"}}, "an integer >= 1"},
      {"/volatile_db/num_partitions", {1, 64}, {{0, "0"}}, "an integer >= 1"},
      {"/volatile_db/num_node_connections", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/volatile_db/max_batch_size", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/volatile_db/allocation_rate", {1, "1B"}, {{0, "0"}, {"0KiB", "\"0KiB\""}},
       "a byte size (an integer >= 1 or a string such as \"256MiB\")"},
      {"/persistent_db/memtable_size", {1048576, "1MiB", "2MB"}, {{1048575, "1048575"}, {"1000KB", "\"1000KB\""}},
       "a byte size (an integer >= 1048576 or a string such as \"256MiB\")"},
      {"/persistent_db/num_threads", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/persistent_db/max_batch_size", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/persistent_db/block_cache_size", {1, "16MiB", "1GB"}, {{0, "0"}, {"0MiB", "\"0MiB\""}},
       "a byte size (an integer >= 1 or a string such as \"256MiB\")"},
      {"/update_source/max_batch_size", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/update_source/max_commit_interval", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/update_source/metadata_refresh_interval_ms", {10}, {{9, "9"}}, "an integer >= 10"},
      {"/update_source/receive_buffer_size", {1024}, {{1023, "1023"}}, "an integer >= 1024"},
      {"/models/0/max_batch_size", {1}, {{0, "0"}}, "an integer >= 1"},
      {"/models/0/embedding_vecsize_per_table/1", {1, 1048576}, {{0, "0"}, {1048577, "1048577"}},
       "an integer in [1, 1048576]"},
      {"/models/0/deployed_device_list/0", {0, 2147483647}, {{-1, "-1"}, {2147483648ll, "2147483648"}},
       "an integer in [0, 2147483647]"},
      {"/models/0/default_value_for_each_table", {Json::array({-1e38}), Json::array({3e38})}, {},
       "a number in (-3.40282e+38, 3.40282e+38)"},
      {"/models/0/default_value_for_each_table/0", {}, {{1e39, "1e+39"}}, "a number in (-3.40282e+38, 3.40282e+38)"},
  };
  for (const Case& c : cases) {
    for (const Json& good : c.good) {
      SCOPED_TRACE(c.pointer + " = " + good.dump());
      EXPECT_NO_THROW(parse(with(c.pointer, good)));
    }
    for (const auto& [bad, found] : c.bad) {
      SCOPED_TRACE(c.pointer + " = " + bad.dump());
      EXPECT_EQ(error_of(with(c.pointer, bad)),
                "config.json: " + path_of(c.pointer) + ": expected " + c.expected + ", found " + found);
    }
  }
  // Whole numbers written as floats are integers.
  const Config c = parse(with("/volatile_db/max_batch_size", 1e6));
  EXPECT_EQ(c.volatile_db.max_batch_size, 1000000u);
  EXPECT_EQ(parse(with("/volatile_db/num_partitions", 16.0)).volatile_db.num_partitions, 16u);
  EXPECT_EQ(parse(with("/models/0/hit_rate_threshold", 2)).models[0].hit_rate_threshold, 2.0);
}

// Found by fuzz_config: FLT_MAX's shortest text, 3.4028235e+38, is a double just above FLT_MAX, so a
// bound at FLT_MAX refused it, and config_to_json's own output for such a default did not parse.
TEST(Config, DefaultValueTakesEveryNumberThatRoundsToAFiniteFloat) {
  const float max = std::numeric_limits<float>::max();
  for (const char* text : {"3.4028235e38", "3.4028235e+38", "3.4028234663852886e38", "3.40282356e38"}) {
    SCOPED_TRACE(text);
    for (const int sign : {1, -1}) {
      Json j = minimal_json();
      j["models"][0]["default_value_for_each_table"] = Json::array({Json::parse(text).get<double>() * sign});
      const Config c = parse(j.dump());
      EXPECT_EQ(c.models[0].tables[0].default_value, max * static_cast<float>(sign));
      const std::string normalized = config_to_json(c);
      const Config again = parse_config(normalized, "normalized.json");
      EXPECT_EQ(again.models[0].tables[0].default_value, max * static_cast<float>(sign));
      EXPECT_EQ(config_to_json(again), normalized);
    }
  }
  // 2^128 - 2^103 (the midpoint to 2^128) and above round to infinity: refused.
  Json j = minimal_json();
  j["models"][0]["default_value_for_each_table"] = Json::array({3.4028235677973366e38});
  EXPECT_EQ(error_of(j.dump()), "config.json: models[0].default_value_for_each_table[0]: expected a number in "
                                "(-3.40282e+38, 3.40282e+38), found 3.4028235677973366e+38");
}

// Found by fuzz_config: a long string is shown cut to 57 bytes; cut inside a UTF-8 character, the
// message could not be written and nlohmann's type_error escaped parse_config.
TEST(Config, LongNonAsciiValuesAreShownCutBetweenCharacters) {
  std::string name;
  for (int i = 0; i < 40; ++i) name += "\xc3\xa9";  // 40 x U+00E9: byte 57 is inside the 29th
  Json j = minimal_json();
  j["models"][0]["model"] = name;
  const std::string message = error_of(j.dump());
  EXPECT_NE(message.find("config.json: models[0].model: expected a name"), std::string::npos) << message;
  EXPECT_NE(message.find(", found \"" + name.substr(0, 56) + "...\""), std::string::npos) << message;
}

TEST(Config, PerTableArraysMustMatchTheTableCount) {
  const std::string dims = "models[0].embedding_vecsize_per_table has 2";
  EXPECT_EQ(error_of(with("/models/0/sparse_files", Json::array({"a", "b", "c"}))),
            "config.json: models[0].sparse_files: has 3 entries but " + dims);
  EXPECT_EQ(error_of(with("/models/0/sparse_files", Json::array({"a"}))),
            "config.json: models[0].sparse_files: has 1 entry but " + dims);
  EXPECT_EQ(error_of(with("/models/0/embedding_table_names", Json::array({"a"}))),
            "config.json: models[0].embedding_table_names: has 1 entry but " + dims);
  EXPECT_EQ(error_of(with("/models/0/maxnum_catfeature_query_per_table_per_sample", Json::array({1, 2, 3}))),
            "config.json: models[0].maxnum_catfeature_query_per_table_per_sample: has 3 entries but " + dims);
  EXPECT_EQ(error_of(with("/models/0/default_value_for_each_table", Json::array({1, 2, 3}))),
            "config.json: models[0].default_value_for_each_table: has 3 entries but " + dims +
                " (give one entry per table, or a single entry for all)");
  EXPECT_EQ(error_of(with("/models/0/embedding_cache_dtype", Json::array({"float16", "float16", "float32"}))),
            "config.json: models[0].embedding_cache_dtype: has 3 entries but " + dims +
                " (give one entry per table, or a single entry for all)");

  // One entry (or a plain string for the dtype) applies to every table.
  const Config one = parse(with("/models/0/default_value_for_each_table", Json::array({-1.25})));
  EXPECT_EQ(one.models[0].tables[0].default_value, -1.25f);
  EXPECT_EQ(one.models[0].tables[1].default_value, -1.25f);
  const Config each = parse(with("/models/0/default_value_for_each_table", Json::array({1, 0.1})));
  EXPECT_EQ(each.models[0].tables[0].default_value, 1.0f);
  EXPECT_EQ(each.models[0].tables[1].default_value, 0.1f);
  const Config half = parse(with("/models/0/embedding_cache_dtype", "float16"));
  EXPECT_EQ(half.models[0].tables[0].cache_dtype, CacheDtype::kFloat16);
  EXPECT_EQ(half.models[0].tables[1].cache_dtype, CacheDtype::kFloat16);
  const Config mixed = parse(with("/models/0/embedding_cache_dtype", Json::array({"float32", "float16"})));
  EXPECT_EQ(mixed.models[0].tables[0].cache_dtype, CacheDtype::kFloat32);
  EXPECT_EQ(mixed.models[0].tables[1].cache_dtype, CacheDtype::kFloat16);
  EXPECT_EQ(error_of(with("/models/0/embedding_cache_dtype", Json::array({"float32", "bf16"}))),
            "config.json: models[0].embedding_cache_dtype[1]: expected one of \"float32\", \"float16\", found "
            "\"bf16\"");
}

TEST(Config, DuplicatesAreRefused) {
  Json models = minimal_json();
  models["models"].push_back(models["models"][0]);
  EXPECT_EQ(error_of(models.dump()),
            "config.json: models[1].model: duplicate model name \"m\" (also at models[0].model)");
  EXPECT_EQ(error_of(with("/models/0/embedding_table_names", Json::array({"a", "a"}))),
            "config.json: models[0].embedding_table_names[1]: duplicate value \"a\" (also at "
            "models[0].embedding_table_names[0])");
  EXPECT_EQ(error_of(with("/models/0/deployed_device_list", Json::array({0, 1, 0}))),
            "config.json: models[0].deployed_device_list[2]: duplicate value 0 (also at "
            "models[0].deployed_device_list[0])");
  // Table names only need to be unique within a model.
  Json two = minimal_json();
  two["models"].push_back(two["models"][0]);
  two["models"][1]["model"] = "other";
  EXPECT_EQ(parse(two.dump()).models[1].tables[0].name, "sparse_embedding0");
  // A key written twice in one object with different values is an error, not "the last one wins";
  // with the same value (HugeCTR's documented example repeats "use_static_table": false) a warning.
  EXPECT_EQ(error_of(R"({"models": [{"model": "a", "gpucache": true, "gpucache": false}]})"),
            "config.json: models[0].gpucache: key appears more than once in the same object, with different values");
  EXPECT_EQ(error_of(R"({"volatile_db": {"type": "hash_map"}, "volatile_db": {}})"),
            "config.json: volatile_db: key appears more than once in the same object, with different values");
  Json twice = minimal_json();
  std::string text = twice.dump();
  text.replace(text.find("\"model\""), 0, R"("use_static_table": false, "use_static_table": false, )");
  const Config same = parse(text);
  EXPECT_EQ(same.warnings, std::vector<std::string>{"config.json: models[0].use_static_table: appears more than "
                                                    "once in the same object, with the same value"});
}

TEST(Config, UpdateFiltersMustBeRegularExpressions) {
  const Config ok = parse(with("/persistent_db/update_filters", Json::array({"^dlrm$", "wd.*", "(a|b)+"})));
  EXPECT_EQ(ok.persistent_db.update_filters, (std::vector<std::string>{"^dlrm$", "wd.*", "(a|b)+"}));
  EXPECT_TRUE(parse(with("/volatile_db/update_filters", Json::array())).volatile_db.update_filters.empty());
  const std::string message = error_of(with("/volatile_db/update_filters", Json::array({".+", "([a-z"})));
  EXPECT_TRUE(contains(message, "config.json: volatile_db.update_filters[1]: invalid regular expression \"([a-z\": "))
      << message;
}

TEST(Config, EnumAliasesAsHugeCtr) {
  const std::vector<std::pair<std::string, VolatileDbType>> volatile_types = {
      {"disabled", VolatileDbType::kDisabled},       {"disable", VolatileDbType::kDisabled},
      {"none", VolatileDbType::kDisabled},           {"hash_map", VolatileDbType::kHashMap},
      {"hashmap", VolatileDbType::kHashMap},         {"hash", VolatileDbType::kHashMap},
      {"map", VolatileDbType::kHashMap},             {"parallel_hash_map", VolatileDbType::kHashMap},
      {"parallel_hashmap", VolatileDbType::kHashMap}, {"parallel_hash", VolatileDbType::kHashMap},
      {"parallel_map", VolatileDbType::kHashMap},    {"redis_cluster", VolatileDbType::kRedisCluster},
      {"redis", VolatileDbType::kRedisCluster}};
  for (const auto& [text, value] : volatile_types)
    EXPECT_EQ(parse(with("/volatile_db/type", text)).volatile_db.type, value) << text;

  const std::vector<std::pair<std::string, PersistentDbType>> persistent_types = {
      {"disabled", PersistentDbType::kDisabled}, {"disable", PersistentDbType::kDisabled},
      {"none", PersistentDbType::kDisabled},     {"rocks_db", PersistentDbType::kRocksDb},
      {"rocksdb", PersistentDbType::kRocksDb},   {"rocks", PersistentDbType::kRocksDb}};
  for (const auto& [text, value] : persistent_types)
    EXPECT_EQ(parse(with("/persistent_db/type", text)).persistent_db.type, value) << text;

  const std::vector<std::pair<std::string, UpdateSourceType>> sources = {
      {"null", UpdateSourceType::kNone},
      {"none", UpdateSourceType::kNone},
      {"kafka_message_queue", UpdateSourceType::kKafka},
      {"kafka_mq", UpdateSourceType::kKafka},
      {"kafka", UpdateSourceType::kKafka}};
  for (const auto& [text, value] : sources)
    EXPECT_EQ(parse(with("/update_source/type", text)).update_source.type, value) << text;

  const std::vector<std::pair<std::string, OverflowPolicy>> policies = {
      {"evict_random", OverflowPolicy::kEvictRandom}, {"random", OverflowPolicy::kEvictRandom},
      {"evict_least_used", OverflowPolicy::kEvictLeastUsed}, {"least_used", OverflowPolicy::kEvictLeastUsed},
      {"evict_oldest", OverflowPolicy::kEvictOldest}, {"oldest", OverflowPolicy::kEvictOldest}};
  for (const auto& [text, value] : policies)
    EXPECT_EQ(parse(with("/volatile_db/overflow_policy", text)).volatile_db.overflow_policy, value) << text;

  const std::vector<std::pair<std::string, EmbeddingCacheType>> caches = {
      {"dynamic", EmbeddingCacheType::kDynamic},
      {"static", EmbeddingCacheType::kStatic},
      {"uvm", EmbeddingCacheType::kDynamic},
      {"stochastic", EmbeddingCacheType::kDynamic}};
  for (const auto& [text, value] : caches) {
    const Config c = parse(with("/models/0/embedding_cache_type", text));
    EXPECT_EQ(c.models[0].embedding_cache_type, value) << text;
    // Served differently than the name says: a warning tells.
    EXPECT_EQ(c.warnings.size(), text == "uvm" || text == "stochastic" ? 1u : 0u) << text;
  }
  EXPECT_EQ(parse(with("/models/0/embedding_cache_type", "stochastic")).warnings.at(0),
            "config.json: models[0].embedding_cache_type: \"stochastic\" is served by the dynamic GPU cache "
            "(HugeCTR did the same: its stochastic cache was never enabled)");

  // use_static_table: true forces the static cache; false changes nothing.
  EXPECT_EQ(parse(with("/models/0/use_static_table", true)).models[0].embedding_cache_type,
            EmbeddingCacheType::kStatic);
  Json forced = minimal_json();
  forced["models"][0]["embedding_cache_type"] = "dynamic";
  forced["models"][0]["use_static_table"] = true;
  EXPECT_EQ(parse(forced.dump()).models[0].embedding_cache_type, EmbeddingCacheType::kStatic);
  EXPECT_EQ(parse(with("/models/0/use_static_table", false)).models[0].embedding_cache_type,
            EmbeddingCacheType::kDynamic);

  // An absent volatile_db, or one without `type`, is a hash map.
  EXPECT_EQ(parse(with("/volatile_db", Json::object())).volatile_db.type, VolatileDbType::kHashMap);
  EXPECT_EQ(parse(with("/volatile_db/address", "h:1")).volatile_db.type, VolatileDbType::kHashMap);
}

TEST(Config, RefusedAndUnknownEnumValues) {
  for (const char* mp : {"multi_process_hash_map", "multi_process_hashmap", "multi_process_hash", "multi_process_map"})
    EXPECT_EQ(error_of(with("/volatile_db/type", mp)),
              std::string("config.json: volatile_db.type: \"") + mp +
                  "\": the multi-process hash map is not supported; use \"hash_map\" (one process) or "
                  "\"redis_cluster\" (shared between processes)");
  for (const char* rocks : {"rocks_db", "rocksdb", "rocks"})
    EXPECT_EQ(error_of(with("/volatile_db/type", rocks)),
              std::string("config.json: volatile_db.type: \"") + rocks +
                  "\": RocksDB is a persistent database; configure it under persistent_db, not volatile_db");

  // Matching is exact and lower-case; an unknown value lists the valid ones (HugeCTR fell back).
  const std::string upper = error_of(with("/volatile_db/type", "HASH_MAP"));
  EXPECT_TRUE(contains(upper, "config.json: volatile_db.type: expected one of \"disabled\", \"hash_map\", "
                              "\"redis_cluster\" (also accepted: "))
      << upper;
  EXPECT_TRUE(contains(upper, "found \"HASH_MAP\"")) << upper;
  EXPECT_EQ(error_of(with("/volatile_db/overflow_policy", "lru")),
            "config.json: volatile_db.overflow_policy: expected one of \"evict_random\", \"evict_least_used\", "
            "\"evict_oldest\" (also accepted: \"random\", \"least_used\", \"oldest\"), found \"lru\"");
  EXPECT_EQ(error_of(with("/persistent_db/type", "rocksbd")),
            "config.json: persistent_db.type: expected one of \"disabled\", \"rocks_db\" (also accepted: "
            "\"disable\", \"none\", \"rocksdb\", \"rocks\"), found \"rocksbd\"; did you mean \"rocks_db\"?");
  EXPECT_EQ(error_of(with("/update_source/type", "kafak")),
            "config.json: update_source.type: expected one of \"null\", \"kafka_message_queue\" (also accepted: "
            "\"none\", \"kafka_mq\", \"kafka\"), found \"kafak\"; did you mean \"kafka\"?");
  EXPECT_EQ(error_of(with("/models/0/embedding_cache_type", "Static")),
            "config.json: models[0].embedding_cache_type: expected one of \"dynamic\", \"static\" (also accepted: "
            "\"uvm\", \"stochastic\"), found \"Static\"; did you mean \"static\"?");
  EXPECT_EQ(error_of(with("/models/0/embedding_cache_dtype", "bfloat16")),
            "config.json: models[0].embedding_cache_dtype: expected one of \"float32\", \"float16\", found "
            "\"bfloat16\"; did you mean \"float16\"?");
}

TEST(Config, ByteSizesTakeIntegersAndUnitStrings) {
  const std::vector<std::pair<Json, std::uint64_t>> good = {
      {4096, 4096},
      {1e6, 1000000},
      {"4096", 4096},
      {"7B", 7},
      {"5KiB", 5120},
      {"256MiB", 268435456},
      {"1GiB", 1073741824},
      {"1 GiB", 1073741824},
      {"2TiB", 2199023255552},
      {"10KB", 10000},
      {"3MB", 3000000},
      {"1GB", 1000000000},
      {"1TB", 1000000000000},
  };
  for (const auto& [value, bytes] : good) {
    SCOPED_TRACE(value.dump());
    EXPECT_EQ(parse(with("/volatile_db/allocation_rate", value)).volatile_db.allocation_rate, bytes);
    EXPECT_EQ(parse(with("/volatile_db/shared_memory_size", value)).volatile_db.shared_memory_size, bytes);
  }
  for (const char* bad : {"1.5GiB", "1gib", "GiB", "-5", "", " 5", "5 GiBs", "99999999999999999999",
                          "20000000TiB"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(error_of(with("/volatile_db/allocation_rate", bad)),
              std::string("config.json: volatile_db.allocation_rate: expected a byte size (an integer >= 1 or a "
                          "string such as \"256MiB\"), found \"") +
                  bad + "\"");
  }
  EXPECT_EQ(parse(with("/volatile_db/shared_memory_size", 0)).volatile_db.shared_memory_size, 0u);
}

TEST(Config, MalformedJsonGivesLineAndColumn) {
  const std::string extra_comma = "{\n  \"models\": [\n    {\"model\": \"m\",, }\n  ]\n}";
  const std::string message = error_of(extra_comma);
  const std::string prefix = "config.json: line 3, column 19: invalid JSON: ";
  EXPECT_EQ(message.substr(0, prefix.size()), prefix) << message;
  EXPECT_TRUE(contains(message, "unexpected ','")) << message;
  EXPECT_FALSE(contains(message, "[json.exception")) << message;

  const std::string truncated = error_of("{\"models\": [");
  EXPECT_EQ(truncated.substr(0, 43), "config.json: line 1, column 13: invalid JSO") << truncated;
  EXPECT_TRUE(contains(error_of(""), "config.json: line 1, column 1: invalid JSON: "));
  EXPECT_TRUE(contains(error_of("{\n\n   \"a\" 1}"), "config.json: line 3, column 8: invalid JSON: "));
  EXPECT_TRUE(contains(error_of("{\"models\": [1e999]}"), "config.json: invalid JSON: number overflow"));
}

TEST(Config, RelativePathsResolveAgainstTheBaseFolder) {
  Json j = minimal_json();
  j["models"][0]["sparse_files"] = Json::array({"t0", "../shared/./t1"});
  j["models"][0]["embedding_vecsize_per_table"] = Json::array({4, 4});
  j["persistent_db"]["path"] = "db//rocks/";
  const Config c = parse(j.dump(), "/srv/configs/");
  EXPECT_EQ(c.base_dir, "/srv/configs");
  EXPECT_EQ(c.models[0].tables[0].sparse_file, "/srv/configs/t0");
  EXPECT_EQ(c.models[0].tables[1].sparse_file, "/srv/shared/t1");
  EXPECT_EQ(c.persistent_db.path, "/srv/configs/db/rocks");

  j["models"][0]["sparse_files"] = Json::array({"/abs/x/../t0", "s3://bucket/t1"});
  j["persistent_db"]["path"] = "/var/lib/hps";
  const Config absolute = parse(j.dump(), "/srv/configs");
  EXPECT_EQ(absolute.models[0].tables[0].sparse_file, "/abs/t0");
  EXPECT_EQ(absolute.models[0].tables[1].sparse_file, "s3://bucket/t1");  // URLs are left alone
  EXPECT_EQ(absolute.persistent_db.path, "/var/lib/hps");

  // No base folder: the working directory. A relative base folder is taken from it too.
  const fs::path cwd = fs::current_path();
  EXPECT_EQ(parse(minimal_json().dump()).models[0].tables[1].sparse_file, normal(cwd / "t1"));
  const Config relative = parse(minimal_json().dump(), "conf");
  EXPECT_EQ(relative.base_dir, normal(cwd / "conf"));
  EXPECT_EQ(relative.models[0].tables[0].sparse_file, normal(cwd / "conf" / "t0"));
}

TEST(Config, LoadConfigFileReadsFromTheFileFolder) {
  const fs::path dir = fs::temp_directory_path() / ("hps_test_config_" + std::to_string(::getpid()));
  fs::create_directories(dir / "sub");
  const fs::path file = dir / "sub" / "ps.json";
  std::ofstream(file) << with("/persistent_db/path", "../db");
  const Config c = load_config_file(file.string());
  EXPECT_EQ(c.base_dir, normal(dir / "sub"));
  EXPECT_EQ(c.models[0].tables[0].sparse_file, normal(dir / "sub" / "t0"));
  EXPECT_EQ(c.persistent_db.path, normal(dir / "db"));

  std::ofstream(dir / "bad.json") << "{\"models\": 1}";
  try {
    load_config_file((dir / "bad.json").string());
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "bad.json").string() +
                                         ": models: expected a non-empty array of objects, found 1");
  }

  for (const fs::path& unreadable : {dir / "missing.json", dir / "sub"}) {
    try {
      load_config_file(unreadable.string());
      ADD_FAILURE() << "no error for " << unreadable;
    } catch (const IOError& e) {
      EXPECT_TRUE(contains(e.what(), unreadable.string())) << e.what();
    }
  }
  fs::remove_all(dir);
}

TEST(Config, CompatibilityKeysWarnOnlyWhenPresent) {
  struct Case {
    std::string pointer;
    Json value;
    std::string why;
  };
  const std::string multi = "hps has no multi-process hash map";
  const std::vector<Case> cases = {
      {"/fuse_embedding_table", true, "each table is looked up independently, no fusion is needed"},
      {"/models/0/fuse_embedding_table", false, "each table is looked up independently, no fusion is needed"},
      {"/models/0/max_batch_size", 64, "buffers are sized by each call"},
      {"/models/0/maxnum_catfeature_query_per_table_per_sample", Json::array({1, 2}), "buffers are sized by each call"},
      {"/models/0/num_of_worker_buffer_in_pool", 2, "buffers are sized by each call"},
      {"/models/0/num_of_refresher_buffer_in_pool", 1, "buffers are sized by each call"},
      {"/models/0/dense_file", "d.model", "the dense network is not the parameter server's business"},
      {"/models/0/maxnum_des_feature_per_sample", 13, "the dense network is not the parameter server's business"},
      {"/models/0/network_file", "dlrm.json", "the dense network is not the parameter server's business"},
      {"/models/0/label_dim", 2, "the dense network is not the parameter server's business"},
      {"/models/0/slot_num", 26, "the dense network is not the parameter server's business"},
      {"/models/0/non_trainable_params_file", "nt.json", "the dense network is not the parameter server's business"},
      {"/models/0/use_mixed_precision", true, "the dense network is not the parameter server's business"},
      {"/models/0/scaler", 1024.0, "the dense network is not the parameter server's business"},
      {"/models/0/use_algorithm_search", false, "the dense network is not the parameter server's business"},
      {"/models/0/use_cuda_graph", false, "the dense network is not the parameter server's business"},
      {"/models/0/refresh_delay", 1.5, "there is no refresh timer: call refresh()"},
      {"/models/0/refresh_interval", 60, "there is no refresh timer: call refresh()"},
      {"/models/0/use_context_stream", false, "the caller's stream is always used"},
      {"/models/0/use_hctr_cache_implementation", false, "hps has one dynamic GPU cache implementation"},
      {"/models/0/thread_pool_size", 8, "the server sizes its own threads"},
      {"/models/0/enable_pagelock", true,
       "not implemented; for tables larger than GPU memory use the `dynamic` cache, which keeps the rest in the "
       "CPU-memory tier"},
      {"/models/0/fp8_quant", true,
       "not implemented; use `embedding_cache_dtype: \"float16\"` to halve GPU cache memory"},
      {"/volatile_db/shared_memory_size", "1GiB", multi},
      {"/volatile_db/shared_memory_name", "x", multi},
      {"/volatile_db/shared_memory_auto_remove", false, multi},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.pointer);
    const Config parsed = parse(with(c.pointer, c.value));
    EXPECT_EQ(parsed.warnings, std::vector<std::string>{"config.json: " + path_of(c.pointer) +
                                                        ": accepted for HugeCTR compatibility but does nothing "
                                                        "here: " +
                                                        c.why});
  }
  // Values are still checked, and stored.
  EXPECT_TRUE(contains(error_of(with("/models/0/thread_pool_size", -1)), "expected an integer >= 0, found -1"));
  EXPECT_EQ(parse(with("/models/0/thread_pool_size", 8)).models[0].thread_pool_size, 8u);
  // Keys that do something never warn, nor do defaults.
  Json busy = minimal_json();
  busy["supportlonglong"] = false;
  busy["volatile_db"] = {{"type", "hash_map"}, {"num_partitions", 4}, {"initialize_after_startup", false}};
  busy["persistent_db"] = {{"type", "rocks_db"}};  // so that starting the hash map empty does something
  busy["models"][0]["init_ec"] = false;
  busy["models"][0]["gpucache"] = false;
  const Config quiet = parse(busy.dump());
  EXPECT_TRUE(quiet.warnings.empty());
  EXPECT_FALSE(quiet.supportlonglong);
  EXPECT_FALSE(quiet.volatile_db.initialize_after_startup);
  EXPECT_FALSE(quiet.models[0].gpucache);
}

TEST(Config, RedisTlsIsRefusedWithTheReason) {
  // hiredis 0.14 has no TLS: connecting in clear text when TLS was asked for would be worse.
  const std::string text = R"({"volatile_db": {"type": "redis_cluster", "enable_tls": true},
                               "models": [{"model": "m", "sparse_files": ["t"], "embedding_vecsize_per_table": [4]}]})";
  try {
    hps::parse_config(text);
    FAIL() << "expected ConfigError";
  } catch (const hps::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("volatile_db.enable_tls"), std::string::npos) << e.what();
  }
  // The hash map ignores TLS keys (HugeCTR configs carry them).
  EXPECT_NO_THROW(hps::parse_config(R"({"volatile_db": {"type": "hash_map", "enable_tls": true},
      "models": [{"model": "m", "sparse_files": ["t"], "embedding_vecsize_per_table": [4]}]})"));
}

TEST(Config, NormalizedJsonRoundTrips) {
  Json everything = Json::parse(R"({
    "supportlonglong": false,
    "fuse_embedding_table": true,
    "volatile_db": {"type": "redis", "address": "a:1,b:2", "user_name": "u", "password": "p", "num_partitions": 3,
                    "allocation_rate": "64MiB", "shared_memory_size": 1024, "shared_memory_name": "n",
                    "shared_memory_auto_remove": false, "num_node_connections": 2, "max_batch_size": 77,
                    "enable_tls": false, "tls_ca_certificate": "ca", "tls_client_certificate": "cc",
                    "tls_client_key": "ck", "tls_server_name_identification": "sni",
                    "operation_timeout_ms": 250, "refresh_time_after_fetch": true, "overflow_margin": 1000,
                    "overflow_policy": "least_used", "overflow_resolution_target": 0.3, "initial_cache_rate": 0.1,
                    "cache_missed_embeddings": true, "update_filters": ["^a$", "b"],
                    "initialize_after_startup": false},
    "persistent_db": {"type": "rocks", "path": "rel/db", "num_threads": 3, "read_only": true,
                      "max_batch_size": 5, "update_filters": [], "initialize_after_startup": false,
                      "block_cache_size": "32MiB", "memtable_size": 2000000},
    "update_source": {"type": "kafka", "brokers": "k:1", "metadata_refresh_interval_ms": 10,
                      "receive_buffer_size": 1024, "poll_timeout_ms": 0, "max_batch_size": 9,
                      "failure_backoff_ms": 0, "max_commit_interval": 1},
    "models": [{"model": "x-1", "sparse_files": ["a", "/b"], "embedding_vecsize_per_table": [3, 5],
                "embedding_table_names": ["t_a", "t-b"], "default_value_for_each_table": [0.1, -2.5e-7],
                "embedding_cache_dtype": ["float16", "float32"], "gpucache": false, "gpucacheper": 0.125,
                "hit_rate_threshold": 1.5, "cache_refresh_percentage_per_iteration": 0.3,
                "deployed_device_list": [3, 1], "embedding_cache_type": "uvm", "init_ec": false,
                "maxnum_catfeature_query_per_table_per_sample": [0, 7], "max_batch_size": 9,
                "num_of_worker_buffer_in_pool": 3, "num_of_refresher_buffer_in_pool": 4, "thread_pool_size": 5,
                "dense_file": "d", "maxnum_des_feature_per_sample": 6, "refresh_delay": 0.5,
                "refresh_interval": 7.25, "use_context_stream": false, "use_hctr_cache_implementation": false,
                "fuse_embedding_table": true, "enable_pagelock": true, "fp8_quant": true},
               {"model": "y", "sparse_files": ["c"], "embedding_vecsize_per_table": [1], "use_static_table": true}]
  })");
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {minimal_json().dump(), ""},
      {everything.dump(), "/base"},
  };
  for (const auto& [text, base] : inputs) {
    const Config first = parse(text, base);
    const std::string normalized = config_to_json(first);
    SCOPED_TRACE(normalized);
    const Config again = parse_config(normalized, "normalized.json", base);
    expect_same(first, again);
    EXPECT_EQ(config_to_json(again), normalized);
    // Re-parsing warns only about compatibility keys set to something other than their default.
    EXPECT_LE(again.warnings.size(), first.warnings.size());
  }
  // With no base folder, the literal statement of the header holds: parse(to_json(c)) == c.
  const Config c = parse(everything.dump());
  expect_same(c, parse_config(config_to_json(c)));
  EXPECT_EQ(c.models[0].embedding_cache_type, EmbeddingCacheType::kDynamic);
  EXPECT_EQ(c.models[1].embedding_cache_type, EmbeddingCacheType::kStatic);

  const Config hugectr = load_config_file((data_dir() / "hugectr_config.json").string());
  expect_same(hugectr, parse_config(config_to_json(hugectr), "n", hugectr.base_dir));

  // Normalized: canonical enum names, every key of the structs, absolute paths.
  Json n = Json::parse(config_to_json(parse(everything.dump(), "/base")));
  EXPECT_EQ(n["volatile_db"]["type"], "redis_cluster");
  EXPECT_EQ(n["volatile_db"]["overflow_policy"], "evict_least_used");
  EXPECT_EQ(n["volatile_db"]["allocation_rate"], 67108864);
  EXPECT_EQ(n["persistent_db"]["type"], "rocks_db");
  EXPECT_EQ(n["persistent_db"]["path"], "/base/rel/db");
  EXPECT_EQ(n["persistent_db"]["block_cache_size"], 33554432);
  EXPECT_EQ(n["persistent_db"]["memtable_size"], 2000000);
  EXPECT_EQ(n["update_source"]["type"], "kafka_message_queue");
  EXPECT_EQ(n["models"][0]["embedding_cache_type"], "dynamic");
  EXPECT_EQ(n["models"][0]["sparse_files"], Json::array({"/base/a", "/b"}));
  EXPECT_EQ(n["models"][0]["default_value_for_each_table"], Json::array({0.1, -2.5e-7}));
  EXPECT_EQ(n["models"][1]["embedding_cache_type"], "static");
  EXPECT_FALSE(n["models"][1].contains("use_static_table"));
  // Compatibility-only keys at their default are left out, so minimal JSON re-parses quietly.
  Json m = Json::parse(config_to_json(parse(minimal_json().dump())));
  for (const char* key : {"max_batch_size", "dense_file", "thread_pool_size", "fp8_quant",
                          "maxnum_catfeature_query_per_table_per_sample", "use_context_stream"})
    EXPECT_FALSE(m["models"][0].contains(key)) << key;
  EXPECT_FALSE(m.contains("fuse_embedding_table"));
  EXPECT_FALSE(m["volatile_db"].contains("shared_memory_size"));
  EXPECT_TRUE(parse(m.dump()).warnings.empty());
  // Compact output on request.
  EXPECT_EQ(config_to_json(parse(minimal_json().dump()), -1).find('\n'), std::string::npos);
}

// The keys of each section, written out independently of the parser.
const std::vector<std::string> kTopKeys = {"supportlonglong", "fuse_embedding_table", "volatile_db", "persistent_db",
                                           "update_source", "models"};
const std::vector<std::string> kVolatileKeys = {
    "type", "address", "user_name", "password", "num_partitions", "allocation_rate", "shared_memory_size",
    "shared_memory_name", "shared_memory_auto_remove", "num_node_connections", "max_batch_size", "enable_tls",
    "tls_ca_certificate", "tls_client_certificate", "tls_client_key", "tls_server_name_identification",
    "operation_timeout_ms", "refresh_time_after_fetch", "overflow_margin", "overflow_policy", "overflow_resolution_target", "initial_cache_rate",
    "cache_missed_embeddings", "update_filters", "initialize_after_startup"};
const std::vector<std::string> kPersistentKeys = {"type", "path", "num_threads", "read_only", "max_batch_size",
                                                  "update_filters", "initialize_after_startup", "block_cache_size",
                                                  "memtable_size"};
const std::vector<std::string> kUpdateKeys = {"type", "brokers", "metadata_refresh_interval_ms",
                                              "receive_buffer_size", "poll_timeout_ms", "max_batch_size",
                                              "failure_backoff_ms", "max_commit_interval", "group_id"};
const std::vector<std::string> kModelKeys = {
    "model", "max_batch_size", "sparse_files", "gpucache", "hit_rate_threshold", "gpucacheper", "dense_file",
    "num_of_worker_buffer_in_pool", "num_of_refresher_buffer_in_pool", "cache_refresh_percentage_per_iteration",
    "deployed_device_list", "maxnum_catfeature_query_per_table_per_sample", "embedding_vecsize_per_table",
    "default_value_for_each_table", "maxnum_des_feature_per_sample", "refresh_delay", "refresh_interval",
    "embedding_table_names", "fuse_embedding_table", "use_static_table", "embedding_cache_type",
    "use_context_stream", "use_hctr_cache_implementation", "thread_pool_size", "init_ec", "enable_pagelock",
    "fp8_quant", "embedding_cache_dtype", "network_file", "label_dim", "slot_num", "non_trainable_params_file",
    "use_mixed_precision", "scaler", "use_algorithm_search", "use_cuda_graph", "gpu_visible_host_tier",
    "host_tier_index_hbm_share"};
const std::set<std::string> kIgnoredModelKeys = {
    "max_batch_size", "dense_file", "num_of_worker_buffer_in_pool", "num_of_refresher_buffer_in_pool",
    "maxnum_catfeature_query_per_table_per_sample", "maxnum_des_feature_per_sample", "refresh_delay",
    "refresh_interval", "fuse_embedding_table", "use_context_stream", "use_hctr_cache_implementation",
    "thread_pool_size", "enable_pagelock", "fp8_quant", "network_file", "label_dim", "slot_num",
    "non_trainable_params_file", "use_mixed_precision", "scaler", "use_algorithm_search", "use_cuda_graph"};

std::set<std::string> keys_of(const Json& object) {
  std::set<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.insert(key);
  return keys;
}

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

TEST(Config, SchemaNamesEveryKeyAndMarksRequiredOnes) {
  // Not const: a missing key then reads as null and fails an expectation instead of aborting.
  Json schema = Json::parse(config_json_schema());
  EXPECT_EQ(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
  Json& models = schema["properties"]["models"];
  const std::vector<std::pair<Json*, const std::vector<std::string>*>> sections = {
      {&schema, &kTopKeys},
      {&schema["properties"]["volatile_db"], &kVolatileKeys},
      {&schema["properties"]["persistent_db"], &kPersistentKeys},
      {&schema["properties"]["update_source"], &kUpdateKeys},
      {&models["items"], &kModelKeys}};
  for (const auto& [section, keys] : sections) {
    EXPECT_EQ((*section)["type"], "object");
    EXPECT_EQ((*section)["additionalProperties"], false);
    EXPECT_EQ(keys_of((*section)["properties"]), as_set(*keys));
    for (const auto& [key, property] : (*section)["properties"].items()) {
      EXPECT_FALSE(property.value("description", "").empty()) << key;
      EXPECT_TRUE(property.contains("type") || property.contains("anyOf")) << key;
    }
  }
  EXPECT_EQ(schema["required"], Json::array({"models"}));
  EXPECT_EQ(models["type"], "array");
  EXPECT_EQ(models["minItems"], 1);
  EXPECT_EQ(as_set(models["items"]["required"].get<std::vector<std::string>>()),
            (std::set<std::string>{"model", "sparse_files", "embedding_vecsize_per_table"}));
  EXPECT_FALSE(schema["properties"]["volatile_db"].contains("required"));

  // Compatibility-only keys are marked deprecated, and only they.
  std::set<std::string> deprecated;
  for (const auto& [key, property] : models["items"]["properties"].items())
    if (property.value("deprecated", false)) deprecated.insert(key);
  EXPECT_EQ(deprecated, kIgnoredModelKeys);
  EXPECT_TRUE(schema["properties"]["fuse_embedding_table"]["deprecated"]);
  EXPECT_TRUE(schema["properties"]["volatile_db"]["properties"]["shared_memory_name"]["deprecated"]);
  EXPECT_FALSE(schema["properties"]["volatile_db"]["properties"]["num_partitions"].contains("deprecated"));

  // Ranges, enums and defaults as documented.
  Json& m = models["items"]["properties"];
  EXPECT_EQ(m["gpucacheper"]["exclusiveMinimum"], 0);
  EXPECT_EQ(m["gpucacheper"]["maximum"], 1);
  EXPECT_EQ(m["gpucacheper"]["default"], 0.2);
  EXPECT_EQ(m["hit_rate_threshold"]["minimum"], 0);
  EXPECT_FALSE(m["hit_rate_threshold"].contains("maximum"));
  EXPECT_EQ(m["embedding_vecsize_per_table"]["items"]["minimum"], 1);
  EXPECT_EQ(m["model"]["pattern"], "^[A-Za-z0-9_-]{1,120}$");
  EXPECT_EQ(m["embedding_cache_type"]["enum"], Json::array({"dynamic", "static", "uvm", "stochastic"}));
  EXPECT_EQ(m["deployed_device_list"]["uniqueItems"], true);
  EXPECT_EQ(m["deployed_device_list"]["default"], Json::array({0}));
  Json& v = schema["properties"]["volatile_db"]["properties"];
  EXPECT_EQ(v["type"]["default"], "hash_map");
  EXPECT_EQ(v["overflow_margin"]["default"], 18446744073709551615ull);
  EXPECT_EQ(v["allocation_rate"]["default"], 268435456);
  EXPECT_FALSE(v["num_partitions"].contains("default"));  // depends on the machine
  EXPECT_EQ(v["update_filters"]["items"]["format"], "regex");
  EXPECT_EQ(schema["properties"]["update_source"]["properties"]["receive_buffer_size"]["minimum"], 1024);
  EXPECT_EQ(schema["properties"]["update_source"]["properties"]["type"]["default"], "null");

  // Every default in the schema is what the parser fills in for an absent key.
  Json normalized = Json::parse(config_to_json(parse(minimal_json().dump())));
  const std::vector<std::pair<Json*, Json*>> pairs = {
      {&schema["properties"], &normalized},
      {&schema["properties"]["volatile_db"]["properties"], &normalized["volatile_db"]},
      {&schema["properties"]["persistent_db"]["properties"], &normalized["persistent_db"]},
      {&schema["properties"]["update_source"]["properties"], &normalized["update_source"]},
      {&m, &normalized["models"][0]}};
  for (const auto& [properties, values] : pairs) {
    for (const auto& [key, property] : properties->items()) {
      if (property.contains("default") && values->contains(key) && key != "default_value_for_each_table" &&
          key != "embedding_cache_dtype") {
        EXPECT_EQ((*values)[key], property["default"]) << key;
      }
    }
  }
  // Per-table defaults are given in their one-for-all form.
  EXPECT_EQ(m["default_value_for_each_table"]["default"], Json::array({0.0}));
  EXPECT_EQ(m["embedding_cache_dtype"]["default"], "float32");
}

TEST(Config, TableTagAndEnumNames) {
  EXPECT_EQ(table_tag("dlrm", "sparse_embedding0"), "hps_et.dlrm.sparse_embedding0");
  EXPECT_STREQ(to_string(VolatileDbType::kDisabled), "disabled");
  EXPECT_STREQ(to_string(VolatileDbType::kHashMap), "hash_map");
  EXPECT_STREQ(to_string(VolatileDbType::kRedisCluster), "redis_cluster");
  EXPECT_STREQ(to_string(PersistentDbType::kDisabled), "disabled");
  EXPECT_STREQ(to_string(PersistentDbType::kRocksDb), "rocks_db");
  EXPECT_STREQ(to_string(UpdateSourceType::kNone), "null");
  EXPECT_STREQ(to_string(UpdateSourceType::kKafka), "kafka_message_queue");
  EXPECT_STREQ(to_string(OverflowPolicy::kEvictRandom), "evict_random");
  EXPECT_STREQ(to_string(OverflowPolicy::kEvictLeastUsed), "evict_least_used");
  EXPECT_STREQ(to_string(OverflowPolicy::kEvictOldest), "evict_oldest");
  EXPECT_STREQ(to_string(EmbeddingCacheType::kDynamic), "dynamic");
  EXPECT_STREQ(to_string(EmbeddingCacheType::kStatic), "static");
  EXPECT_STREQ(to_string(CacheDtype::kFloat32), "float32");
  EXPECT_STREQ(to_string(CacheDtype::kFloat16), "float16");
}

// ---------------------------------------------------------------------------------------------
// docs/configuration.md: its key tables are generated from the schema. Each sits between
// "<!-- BEGIN GENERATED: <section> -->" and "<!-- END GENERATED -->"; a mismatch prints the table
// to paste (or run with HPS_WRITE_DOCS=1 to rewrite them in place).

std::string bounds_text(const Json& p) {
  const auto bound = [&p](const char* key) { return p.at(key).dump(); };
  const bool lo = p.contains("minimum") || p.contains("exclusiveMinimum");
  const bool hi = p.contains("maximum") || p.contains("exclusiveMaximum");
  const std::string min = p.contains("minimum") ? bound("minimum") : lo ? bound("exclusiveMinimum") : "";
  const std::string max = p.contains("maximum") ? bound("maximum") : hi ? bound("exclusiveMaximum") : "";
  if (lo && hi)
    return std::string(" in ") + (p.contains("minimum") ? "[" : "(") + min + ", " + max +
           (p.contains("maximum") ? "]" : ")");
  if (lo) return (p.contains("minimum") ? " >= " : " > ") + min;
  if (hi) return (p.contains("maximum") ? " <= " : " < ") + max;
  return "";
}

/// "integer >= 1", or in the plural "integers >= 1".
std::string type_text(const Json& p, bool plural = false) {
  const std::string s = plural ? "s" : "";
  if (p.contains("anyOf")) {
    std::string text;
    for (const Json& option : p["anyOf"]) text += (text.empty() ? "" : " or ") + type_text(option, plural);
    return text;
  }
  const std::string type = p.value("type", "");
  if (type == "boolean") return "bool" + s;
  if (type == "number" && std::max(p.value("maximum", 0.0), p.value("exclusiveMaximum", 0.0)) > 3e38)
    return "number" + s + " (32-bit float)";
  if (type == "integer" || type == "number") return type + s + bounds_text(p);
  if (type == "string") {
    if (p.contains("pattern"))
      return p["pattern"].get<std::string>().find("KiB") != std::string::npos ? "size string" + s : "name" + s;
    if (p.contains("format")) return plural ? "regexes" : "regex";
    return (p.contains("minLength") ? "non-empty string" : "string") + s;
  }
  if (type == "array")
    return std::string(p.contains("minItems") ? "non-empty " : "") + "array" + s + " of " +
           type_text(p.at("items"), true) + (p.contains("uniqueItems") ? ", no duplicates" : "");
  return type + s;
}

std::string default_text(const std::string& key, const Json& section, const Json& p) {
  const Json required = section.value("required", Json::array());
  if (std::find(required.begin(), required.end(), key) != required.end()) return "required";
  if (!p.contains("default")) return "see meaning";
  const Json& d = p["default"];
  return "`" + (d.is_string() && !d.get<std::string>().empty() ? d.get<std::string>() : d.dump()) + "`";
}

std::string markdown_table(const Json& section) {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& [key, p] : section.at("properties").items()) {
    std::string meaning = p.value("description", "");
    for (std::size_t at = meaning.find('|'); at != std::string::npos; at = meaning.find('|', at + 2))
      meaning.replace(at, 1, "\\|");
    out += "| `" + key + "` | " + type_text(p) + " | " + default_text(key, section, p) + " | " + meaning + " |\n";
  }
  return out;
}

TEST(Config, DocsKeyTablesAreGeneratedFromTheSchema) {
  const fs::path path = docs_file();
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << "no " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string docs = buffer.str();
  Json schema = Json::parse(config_json_schema());
  const std::vector<std::pair<std::string, const Json*>> sections = {
      {"top level", &schema},
      {"models", &schema["properties"]["models"]["items"]},
      {"volatile_db", &schema["properties"]["volatile_db"]},
      {"persistent_db", &schema["properties"]["persistent_db"]},
      {"update_source", &schema["properties"]["update_source"]}};
  bool changed = false;
  for (const auto& [name, section] : sections) {
    const std::string begin = "<!-- BEGIN GENERATED: " + name + " -->\n";
    const std::string end = "<!-- END GENERATED -->";
    const std::size_t from = docs.find(begin);
    ASSERT_NE(from, std::string::npos) << "docs lack " << begin;
    const std::size_t body = from + begin.size();
    const std::size_t to = docs.find(end, body);
    ASSERT_NE(to, std::string::npos) << "docs lack the end of " << name;
    const std::string expected = markdown_table(*section);
    if (docs.compare(body, to - body, expected) == 0) continue;
    if (std::getenv("HPS_WRITE_DOCS")) {
      docs.replace(body, to - body, expected);
      changed = true;
    } else {
      ADD_FAILURE() << path << ": the table of " << name << " differs from the schema; it should be:\n" << expected;
    }
  }
  if (changed) std::ofstream(path) << docs;

  // Every JSON example of the page is a valid configuration that warns about nothing.
  int examples = 0;
  for (std::size_t at = docs.find("```json\n"); at != std::string::npos; at = docs.find("```json\n", at + 1)) {
    const std::size_t body = at + 8;
    const std::string text = docs.substr(body, docs.find("```", body) - body);
    SCOPED_TRACE(text);
    EXPECT_TRUE(parse(text, "/srv").warnings.empty());
    ++examples;
  }
  EXPECT_GE(examples, 2);
}

}  // namespace

// Settings HugeCTR accepted that would do nothing here: warned about, not refused.
TEST(Config, SettingsWithoutEffectAreWarnedAbout) {
  Json j = minimal_json();
  j["update_source"] = {{"type", "kafka_message_queue"}, {"brokers", "a:9092;b:9092"}};
  j["volatile_db"] = {{"update_filters", Json::array({"^hps_.+$"})}};  // HugeCTR's default, written out
  const Config c = parse(j.dump());
  EXPECT_EQ(c.update_source.brokers, "a:9092,b:9092");  // HugeCTR documented semicolons
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].rfind("config.json: update_source: the update_filters of the tiers in use match none of the "
                                "models", 0),
            0u)
      << c.warnings[0];
  j["volatile_db"]["update_filters"] = Json::array({"^hps_.+$", "m"});
  EXPECT_TRUE(parse(j.dump()).warnings.empty());
  EXPECT_TRUE(hps::model_takes_updates(parse(j.dump()), "m"));
  EXPECT_FALSE(hps::model_takes_updates(parse(j.dump()), "mm"));  // whole names: "m" is no prefix match

  Json empty_start = minimal_json();
  empty_start["volatile_db"] = {{"initialize_after_startup", false}};
  const Config e = parse(empty_start.dump());
  ASSERT_EQ(e.warnings.size(), 1u);
  EXPECT_EQ(e.warnings[0], "config.json: volatile_db.initialize_after_startup: false has no effect without a "
                           "persistent_db: the volatile_db then holds the only copy of the rows and is loaded at start");
  empty_start["persistent_db"] = {{"type", "rocks_db"}};
  EXPECT_TRUE(parse(empty_start.dump()).warnings.empty());
}

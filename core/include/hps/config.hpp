// The configuration schema: typed structs for the whole JSON format, and its one parser.
//
// The JSON keys are HugeCTR HPS's (reference: docs/configuration.md). parse_config() is the only
// parser: Python (hps.Config), the CLI (`hps validate`) and every adapter go through it, so they
// cannot disagree. It rejects unknown keys (suggesting the closest valid one), wrong types and
// out-of-range values with a ConfigError naming the JSON path, and accepts keys that HugeCTR read
// but that change nothing here, adding a warning for each to Config::warnings.
//
// Ownership: plain values; a Config owns everything it holds.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace hps HPS_EXPORT {

enum class VolatileDbType { kDisabled, kHashMap, kRedisCluster };
enum class PersistentDbType { kDisabled, kRocksDb };
enum class UpdateSourceType { kNone, kKafka };
enum class OverflowPolicy { kEvictRandom, kEvictLeastUsed, kEvictOldest };
/// HugeCTR's "uvm" and "stochastic" are accepted and served by the dynamic cache (with a warning).
enum class EmbeddingCacheType { kDynamic, kStatic };
enum class CacheDtype { kFloat32, kFloat16 };

const char* to_string(VolatileDbType v);
const char* to_string(PersistentDbType v);
const char* to_string(UpdateSourceType v);
const char* to_string(OverflowPolicy v);
const char* to_string(EmbeddingCacheType v);
const char* to_string(CacheDtype v);

/// The default num_partitions of a Redis Cluster table: a fixed count, not this machine's cores,
/// because the table outlives the server that writes it (HugeCTR's core-count default split one
/// table differently on different machines).
constexpr std::size_t kRedisPartitions = 16;
/// The widest row a table may have (values): 4 MiB of fp32, far beyond any embedding, and small
/// enough that rows x dim x 4 bytes cannot overflow 64 bits for any file.
constexpr std::size_t kMaxDim = std::size_t{1} << 20;

/// `volatile_db`: the CPU-memory tier (or Redis Cluster).
struct VolatileDbConfig {
  /// Absent `volatile_db` and a `volatile_db` without `type` both mean a hash map (HugeCTR
  /// disagreed with itself here). `parallel_hash_map` and `hash_map` are the same thing.
  VolatileDbType type = VolatileDbType::kHashMap;
  std::string address = "127.0.0.1:7000";  ///< Redis: comma-separated host:port seeds
  std::string user_name = "default";
  std::string password;
  /// 0 in the struct = resolved by the parser: kRedisPartitions for a Redis Cluster, else
  /// min(16, cores).
  std::size_t num_partitions = 0;
  std::size_t allocation_rate = std::size_t{256} << 20;  ///< hash map: bytes per value page
  std::size_t shared_memory_size = std::size_t{16} << 30;   ///< accepted, unused (no MP hash map)
  std::string shared_memory_name = "hctr_mp_hash_map_database";
  bool shared_memory_auto_remove = true;
  std::size_t num_node_connections = 5;
  std::size_t max_batch_size = 65536;  ///< keys per backend operation
  bool enable_tls = false;
  std::string tls_ca_certificate = "cacertbundle.crt";
  std::string tls_client_certificate = "client_cert.pem";
  std::string tls_client_key = "client_key.pem";
  std::string tls_server_name_identification = "redis.localhost";
  /// Redis: most milliseconds one operation (a connect, a batch of lookups or writes) may take.
  /// A lookup whose node does not answer in time reports those keys missing; a write fails.
  std::size_t operation_timeout_ms = 1000;
  /// Redis, evict_oldest: a lookup refreshes the rows' access time (otherwise age = time since written).
  bool refresh_time_after_fetch = false;
  /// Most rows one partition holds; inserting past it evicts down to
  /// round(overflow_margin * overflow_resolution_target) first.
  std::size_t overflow_margin = std::numeric_limits<std::size_t>::max();
  OverflowPolicy overflow_policy = OverflowPolicy::kEvictRandom;
  double overflow_resolution_target = 0.8;
  /// Share of each table's rows loaded at start when a persistent tier holds the rest.
  double initial_cache_rate = 1.0;
  /// Promote rows found in the persistent tier into this one (only rows really found).
  bool cache_missed_embeddings = false;
  /// Model-name regular expressions whose update streams this tier follows.
  std::vector<std::string> update_filters = {".+"};
  bool initialize_after_startup = true;
};

/// Smallest `persistent_db.memtable_size` (1 MiB): smaller memtables flush constantly. One constant
/// for the parser's bound and the RocksDB store's own check (a config built in code skips the parser).
inline constexpr std::size_t kMinMemtableBytes = std::size_t{1} << 20;

/// `persistent_db`: RocksDB.
struct PersistentDbConfig {
  PersistentDbType type = PersistentDbType::kDisabled;
  std::string path;  ///< parser default: <system temp dir>/rocksdb (as HugeCTR)
  std::size_t num_threads = 16;
  bool read_only = false;
  std::size_t max_batch_size = 65536;
  std::vector<std::string> update_filters = {".+"};
  bool initialize_after_startup = true;
  /// hps extension: bytes of RocksDB's LRU block cache, one per store shared by its tables
  /// (HugeCTR fixed 8 MiB in code).
  std::size_t block_cache_size = std::size_t{256} << 20;
  /// hps extension: bytes of one RocksDB memtable (write_buffer_size; RocksDB's default, 64 MiB).
  std::size_t memtable_size = std::size_t{64} << 20;
};

/// `update_source`: Kafka.
struct UpdateSourceConfig {
  UpdateSourceType type = UpdateSourceType::kNone;
  std::string brokers = "127.0.0.1:9092";
  std::size_t metadata_refresh_interval_ms = 30000;
  std::size_t receive_buffer_size = 262144;
  std::size_t poll_timeout_ms = 500;
  std::size_t max_batch_size = 8192;
  std::size_t failure_backoff_ms = 50;
  std::size_t max_commit_interval = 32;
  /// hps extension: the consumer group whose offsets are committed; "" derives
  /// "hps.<hostname>.<hash of the persistent_db path>" (see docs/kafka.md).
  std::string group_id;
};

/// One embedding table of a model (HugeCTR spreads these over parallel arrays).
struct TableConfig {
  std::string name;         ///< `embedding_table_names[i]`, default "sparse_embedding<i>"
  std::string sparse_file;  ///< `sparse_files[i]`, resolved against the config file's folder
  std::size_t dim = 0;      ///< `embedding_vecsize_per_table[i]`
  float default_value = 0;  ///< `default_value_for_each_table[i]`, returned for keys stored nowhere
  std::size_t max_query_per_sample = 0;  ///< `maxnum_catfeature_query_per_table_per_sample[i]` (unused)
  /// `embedding_cache_dtype` (hps extension): how GPU caches store rows; lookups return fp32 always.
  CacheDtype cache_dtype = CacheDtype::kFloat32;
};

/// One element of `models`.
struct ModelConfig {
  std::string name;  ///< `model`; required; [A-Za-z0-9_-]{1,120}
  std::vector<TableConfig> tables;
  std::size_t max_batch_size = 64;  ///< accepted, unused: buffers are sized by each call
  bool gpucache = true;             ///< use the GPU cache where CUDA is present
  /// Hit rate at or above which inserting a call's misses into the GPU cache may finish after the
  /// call returns. It never changes the rows returned.
  double hit_rate_threshold = 0.9;
  double gpucacheper = 0.2;  ///< dynamic GPU cache capacity as a share of each table's rows
  /// Dynamic GPU caches answer their misses on the device from the CPU-memory hash map (page-locked
  /// and indexed in GPU memory) where they can (docs/gpu_cache.md). An hps extension.
  bool gpu_visible_host_tier = true;
  /// Most of each device's memory one table's host-tier index may take; beyond it, the table's
  /// misses take the host path (with a warning).
  double host_tier_index_hbm_share = 0.1;
  double cache_refresh_percentage_per_iteration = 0.0;
  std::vector<int> deployed_device_list = {0};
  EmbeddingCacheType embedding_cache_type = EmbeddingCacheType::kDynamic;
  bool init_ec = true;
  bool enable_pagelock = false;
  bool fp8_quant = false;
  /// Accepted for compatibility; see Config::warnings for what they do here.
  std::string dense_file;
  std::size_t num_of_worker_buffer_in_pool = 1;
  std::size_t num_of_refresher_buffer_in_pool = 1;
  std::size_t thread_pool_size = 16;
  std::size_t maxnum_des_feature_per_sample = 26;
  double refresh_delay = 0.0;
  double refresh_interval = 0.0;
  bool use_context_stream = true;
  bool use_hctr_cache_implementation = true;
  bool fuse_embedding_table = false;
  /// Dense-network settings of HugeCTR's inference parameters that Triton model configs carry
  /// (HugeCTR's own parser skips them); accepted with a warning so those configs load.
  std::string network_file;
  std::size_t label_dim = 1;
  std::size_t slot_num = 10;
  std::string non_trainable_params_file;
  bool use_mixed_precision = false;
  double scaler = 1.0;
  bool use_algorithm_search = true;
  bool use_cuda_graph = true;
};

struct Config {
  bool supportlonglong = true;  ///< int64 keys (true) or 32-bit keys (false), for every model
  bool fuse_embedding_table = false;  ///< accepted, unused
  VolatileDbConfig volatile_db;
  PersistentDbConfig persistent_db;
  UpdateSourceConfig update_source;
  std::vector<ModelConfig> models;

  /// Where relative paths were resolved from ("" = the working directory).
  std::string base_dir;
  /// One line per key that was accepted but does nothing here, with its JSON path.
  std::vector<std::string> warnings;

  const ModelConfig* find_model(const std::string& name) const;
};

/// Parses and validates `json_text`. `source` names the text in messages (a file path or
/// "<dict>"); `base_dir` resolves relative `sparse_files` and `persistent_db.path`.
/// Throws ConfigError naming the JSON path of the first problem.
Config parse_config(const std::string& json_text, const std::string& source = "<config>",
                    const std::string& base_dir = "");

/// Reads and parses a config file; relative paths resolve against the file's folder.
/// Throws IOError if the file cannot be read, ConfigError if it is invalid.
Config load_config_file(const std::string& path);

/// The config as normalized JSON: every key present, defaults filled in, paths absolute.
/// parse_config(config_to_json(c)) gives c back (without its warnings).
std::string config_to_json(const Config& config, int indent = 2);

/// A JSON Schema (draft 2020-12) of the whole format, for editors.
std::string config_json_schema(int indent = 2);

/// The tag HugeCTR used for a table in every backend: "hps_et.<model>.<table>".
std::string table_tag(const std::string& model, const std::string& table);

/// Whether streamed updates of `model` are applied: an update_filters regex of a tier in use
/// (volatile_db, persistent_db) matches its whole name.
bool model_takes_updates(const Config& config, const std::string& model);

}  // namespace hps

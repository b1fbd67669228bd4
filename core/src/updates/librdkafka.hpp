// librdkafka, loaded at run time (internal).
//
// hps does not link librdkafka: the Kafka consumer looks for it when a server first needs it, so
// the library and the Python wheel carry no hard dependency, and the newest librdkafka around is
// used. Where it looks, in order:
//   1. the file named by the environment variable HPS_LIBRDKAFKA (an error if it does not load);
//   2. the librdkafka inside an installed confluent-kafka wheel: `confluent_kafka.libs/librdkafka*.so*`
//      next to the folder holding libhps_core (both sit in site-packages);
//   3. the system's `librdkafka.so.1`.
// Types come from the librdkafka C header hps was built with; functions from this table.
//
// Ownership: the library is loaded once per process and never unloaded; the table lives as long.
// Threads: librdkafka() may be called from any thread; the first call loads.
#pragma once

#include <librdkafka/rdkafka.h>

#include <string>

namespace hps::kafka {

struct RdKafka {
  std::string path;     ///< the file that was loaded
  std::string version;  ///< rd_kafka_version_str() of it

#define HPS_RDKAFKA_FUNCTIONS(X)                                                                            \
  X(rd_kafka_version_str) X(rd_kafka_err2str) X(rd_kafka_conf_new) X(rd_kafka_conf_set) X(rd_kafka_conf_destroy) \
  X(rd_kafka_conf_set_opaque) X(rd_kafka_conf_set_error_cb) X(rd_kafka_conf_set_log_cb)                       \
  X(rd_kafka_conf_set_offset_commit_cb) X(rd_kafka_opaque) X(rd_kafka_new) X(rd_kafka_destroy)                 \
  X(rd_kafka_poll_set_consumer) X(rd_kafka_consumer_poll) X(rd_kafka_consumer_close) X(rd_kafka_message_destroy) \
  X(rd_kafka_topic_name) X(rd_kafka_metadata) X(rd_kafka_metadata_destroy) X(rd_kafka_topic_partition_list_new) \
  X(rd_kafka_topic_partition_list_add) X(rd_kafka_topic_partition_list_destroy) X(rd_kafka_incremental_assign)   \
  X(rd_kafka_error_string) X(rd_kafka_error_destroy) X(rd_kafka_commit) X(rd_kafka_get_watermark_offsets)  \
  X(rd_kafka_committed)

#define HPS_RDKAFKA_MEMBER(name) decltype(&::name) name = nullptr;
  HPS_RDKAFKA_FUNCTIONS(HPS_RDKAFKA_MEMBER)
#undef HPS_RDKAFKA_MEMBER
};

/// The loaded library. Throws BackendUnavailable naming every place tried and why each failed.
const RdKafka& librdkafka();

}  // namespace hps::kafka

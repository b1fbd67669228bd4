# C++ declarations of the hps core used by the extension module (declarations only).
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libcpp cimport bool
from libcpp.memory cimport shared_ptr, unique_ptr
from libcpp.string cimport string
from libcpp.vector cimport vector
from libcpp.utility cimport pair

cdef extern from "_bridge.hpp" namespace "hps::python":
    void translate_exception()
    void register_error_types(object base, object config, object invalid_argument, object not_found,
                              object io, object backend_unavailable, object out_of_memory)

cdef extern from "hps/keys.hpp" namespace "hps" nogil:
    cpdef enum class KeyDtype(int):
        kInt32
        kInt64
        kUInt32
        kUInt64

cdef extern from "hps/config.hpp" namespace "hps" nogil:
    cdef cppclass TableConfig:
        string name
        string sparse_file
        size_t dim
        float default_value

    cdef cppclass ModelConfig:
        string name
        vector[TableConfig] tables
        bool gpucache
        vector[int] deployed_device_list

    cpdef enum class EmbeddingCacheType(int):
        kDynamic
        kStatic

    cpdef enum class CacheDtype(int):
        kFloat32
        kFloat16

    # Opaque: the hash map reads it through HashMapOptions.from_config.
    cdef cppclass VolatileDbConfig:
        pass

    cdef cppclass Config:
        bool supportlonglong
        VolatileDbConfig volatile_db
        vector[ModelConfig] models
        string base_dir
        vector[string] warnings

    Config parse_config(const string& json_text, const string& source, const string& base_dir) except +translate_exception
    Config load_config_file(const string& path) except +translate_exception
    string config_to_json(const Config& config, int indent) except +translate_exception
    string config_json_schema(int indent) except +translate_exception
    string table_tag(const string& model, const string& table)

cdef extern from "hps/metrics.hpp" namespace "hps" nogil:
    # Opaque here: stats reach Python as the core's JSON (to_json), so tiers need no fields here.
    cdef cppclass TableStats:
        pass

    string stats_to_json "hps::to_json"(const vector[TableStats]& stats) except +translate_exception

cdef extern from "hps/update_source.hpp" namespace "hps" nogil:
    # Opaque: reach Python as the core's JSON.
    cdef cppclass UpdateSourceStats:
        pass

    string update_sources_to_json "hps::to_json"(const vector[UpdateSourceStats]& sources) except +translate_exception

cdef extern from "hps/model_io.hpp" namespace "hps" nogil:
    cdef cppclass SparseModelInfo:
        string folder
        size_t rows
        size_t dim
        bool has_meta
        uint64_t key_bytes
        uint64_t vector_bytes
        uint64_t meta_bytes
        string signature

    SparseModelInfo inspect_sparse_model(const string& folder, size_t dim) except +translate_exception
    void check_sparse_model_keys(const string& folder, size_t dim, bool key64) except +translate_exception

    cdef cppclass SparseModelReader:
        SparseModelReader(const string& folder, size_t dim) except +translate_exception
        size_t rows()
        size_t dim()
        void read(size_t first, size_t count, int64_t* keys, float* rows, int64_t* meta) except +translate_exception

    void write_sparse_model(const string& folder, const int64_t* keys, const float* rows, size_t n, size_t dim,
                            const int64_t* meta) except +translate_exception

cdef extern from "hps/build_info.hpp" namespace "hps" nogil:
    string build_features() except +translate_exception

cdef extern from "hps/gpu/gpu_cache.hpp" namespace "hps" nogil:
    int cuda_device_count() except +translate_exception
    size_t cuda_device_memory_bytes(int device) except +translate_exception

cdef extern from "hps/gpu/cache_sizing.hpp" namespace "hps" nogil:
    size_t gpu_cache_capacity_c "hps::gpu_cache_capacity"(EmbeddingCacheType type, double gpucacheper, size_t table_rows)

    cdef cppclass DynamicGpuCacheSize:
        uint64_t sets
        uint64_t slots
        size_t meta_bytes
        size_t tag_bytes
        size_t row_bytes
        size_t lock_bytes
        size_t counter_bytes
        size_t total()

    cdef cppclass StaticGpuCacheSize:
        uint64_t buckets
        size_t entry_bytes
        size_t row_bytes
        size_t free_row_bytes
        size_t counter_bytes
        size_t total()

    DynamicGpuCacheSize dynamic_gpu_cache_size_c "hps::dynamic_gpu_cache_size"(size_t capacity, size_t dim, CacheDtype dtype)
    StaticGpuCacheSize static_gpu_cache_size_c "hps::static_gpu_cache_size"(size_t capacity, size_t dim, CacheDtype dtype)
    uint64_t host_tier_index_slots(size_t rows, size_t capacity)
    size_t host_tier_index_bytes(size_t rows, size_t capacity)
    bint gpu_visible_host_tier_switched_off_c "hps::gpu_visible_host_tier_switched_off"()

cdef extern from "hps/tiers/hash_map_tier.hpp" namespace "hps" nogil:
    cdef cppclass HashMapOptions:
        size_t num_partitions
        size_t overflow_margin
        @staticmethod
        HashMapOptions from_config(const VolatileDbConfig& config)
        size_t capacity()
        size_t record_bytes(size_t dim)
        size_t reserved_per_partition(size_t rows)
        @staticmethod
        size_t index_slots(size_t reserved, size_t held)

    cdef cppclass HashMapFootprint:
        size_t rows
        size_t record_bytes
        size_t records_bytes
        size_t index_slots
        size_t index_bytes
        size_t total()

    HashMapFootprint hash_map_footprint_c "hps::hash_map_footprint"(const HashMapOptions& options, size_t dim, size_t reserved,
                                        const vector[size_t]& keys) except +translate_exception

cdef extern from "hps/tiers/tier_factory.hpp" namespace "hps" nogil:
    size_t fill_rows_c "hps::fill_rows"(size_t capacity, double fill_rate, size_t table_rows)

cdef extern from "hps/tiers/rocksdb_tier.hpp" namespace "hps" nogil:
    bool rocksdb_available()

cdef extern from "hps/tiers/redis_cluster_tier.hpp" namespace "hps" nogil:
    bool redis_available()

cdef extern from "hps/stream.hpp" namespace "hps" nogil:
    cdef cppclass StreamView:
        StreamView()
        @staticmethod
        StreamView cuda(void* handle)

cdef extern from "hps/parameter_server.hpp" namespace "hps" nogil:
    cdef cppclass LoadObserver:
        pass

    void check_config_loadable_c "hps::check_config_loadable"(const Config& config) except +translate_exception
    void check_table_fits_c "hps::check_table_fits"(const Config& config, const string& folder, size_t dim, const string& where) except +translate_exception
    vector[size_t] volatile_keys_per_partition_c "hps::volatile_keys_per_partition"(const Config& config, const string& folder, size_t dim,
                                               size_t last_rows) except +translate_exception

    cdef cppclass TableRef:
        size_t model
        size_t table

    cdef cppclass ServerOptions:
        size_t lookup_threads

    cdef cppclass DeviceBuffers:
        int device
        StreamView stream

    cdef cppclass ParameterServer:
        ParameterServer(Config config, LoadObserver* observer, ServerOptions options) except +translate_exception
        const Config& config()
        bool key64()
        TableRef find_table(const string& model, const string& table) except +translate_exception
        TableRef find_table(const string& model, size_t table_index) except +translate_exception
        size_t dim(TableRef table) except +translate_exception
        void lookup(TableRef table, const void* keys, KeyDtype dtype, size_t n, float* out,
                    const DeviceBuffers& where) except +translate_exception
        void lookup_many(size_t count, const TableRef* tables, const void* const* keys, KeyDtype dtype,
                         const size_t* n, float* const* out, const DeviceBuffers& where) except +translate_exception
        void update(TableRef table, const void* keys, KeyDtype dtype, size_t n, const float* rows) except +translate_exception
        size_t erase(TableRef table, const void* keys, KeyDtype dtype, size_t n) except +translate_exception
        void refresh(const string& model) except +translate_exception
        bool gpu_enabled()
        vector[TableStats] stats() except +translate_exception
        string prometheus() except +translate_exception
        vector[UpdateSourceStats] update_source_stats() except +translate_exception
        void drain_update_sources() except +translate_exception

cdef extern from "hps/server_registry.hpp" namespace "hps" nogil:
    shared_ptr[ParameterServer] acquire_server_file(const string& path, const ServerOptions& options,
                                                    LoadObserver* observer) except +translate_exception
    shared_ptr[ParameterServer] acquire_server_json(const string& json_text, const string& base_dir,
                                                    const ServerOptions& options,
                                                    LoadObserver* observer) except +translate_exception
    shared_ptr[ParameterServer] acquire_server_config(const Config& config, const ServerOptions& options,
                                                      LoadObserver* observer) except +translate_exception
    shared_ptr[ParameterServer] acquire_server_id(const string& id, const ServerOptions& options,
                                                  LoadObserver* observer) except +translate_exception
    shared_ptr[ParameterServer] find_server(const string& id) except +translate_exception
    string registry_server_id "hps::server_id"(const ParameterServer& server) except +translate_exception

cdef extern from "_bridge.hpp" namespace "hps::python":
    cdef cppclass PyLoadObserver(LoadObserver):
        PyLoadObserver(object target)

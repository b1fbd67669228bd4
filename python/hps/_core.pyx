# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True
"""The extension module over the C++ core. Private: use the `hps` package.

Every call into the core releases the GIL. Array arguments arrive as raw addresses from the
Python layer (hps.server), which checks dtypes and shapes and keeps the arrays alive for the call.
"""
import json

from libc.stdint cimport int64_t, uintptr_t
from libcpp.memory cimport shared_ptr, unique_ptr
from libcpp.string cimport string
from libcpp.vector cimport vector

from hps._lib cimport *


cdef str _str(const string& s):
    return s.decode("utf-8", "replace")


cdef string _bytes(str s):
    return s.encode("utf-8")


def register_errors(base, config, invalid_argument, not_found, io, backend_unavailable, out_of_memory):
    register_error_types(base, config, invalid_argument, not_found, io, backend_unavailable, out_of_memory)


def json_schema(int indent=2):
    return _str(config_json_schema(indent))


def tag(str model, str table):
    return _str(table_tag(_bytes(model), _bytes(table)))


def device_count():
    return cuda_device_count()


def has_rocksdb():
    return rocksdb_available()


def has_redis():
    return redis_available()


def features_json():
    return _str(build_features())


cdef class CoreConfig:
    """A parsed, validated configuration (the C++ struct)."""
    cdef Config c

    @staticmethod
    def from_file(str path):
        cdef CoreConfig self = CoreConfig.__new__(CoreConfig)
        cdef string cpath = _bytes(path)
        with nogil:
            self.c = load_config_file(cpath)
        return self

    @staticmethod
    def from_json(str text, str source, str base_dir):
        cdef CoreConfig self = CoreConfig.__new__(CoreConfig)
        cdef string ctext = _bytes(text), csource = _bytes(source), cbase = _bytes(base_dir)
        with nogil:
            self.c = parse_config(ctext, csource, cbase)
        return self

    def to_json(self, int indent=2):
        return _str(config_to_json(self.c, indent))

    @property
    def warnings(self):
        return [_str(w) for w in self.c.warnings]

    @property
    def key64(self):
        return self.c.supportlonglong


def inspect(str folder, size_t dim=0):
    cdef string cfolder = _bytes(folder)
    cdef SparseModelInfo info
    with nogil:
        info = inspect_sparse_model(cfolder, dim)
    return {
        "folder": _str(info.folder), "rows": info.rows, "dim": info.dim, "has_meta": info.has_meta,
        "key_bytes": info.key_bytes, "vector_bytes": info.vector_bytes, "meta_bytes": info.meta_bytes,
    }


def check_keys(str folder, size_t dim, bool key64):
    """Raises InvalidArgumentError naming the first key of the folder a model of this key width cannot take."""
    cdef string cfolder = _bytes(folder)
    with nogil:
        check_sparse_model_keys(cfolder, dim, key64)


def check_config_loadable(CoreConfig config):
    """Raises what the server would raise at load before opening anything (backends, tiers, RocksDB path)."""
    check_config_loadable_c(config.c)


def check_table_fits(CoreConfig config, str folder, size_t dim, str where):
    """Raises ConfigError when `config`'s tiers cannot hold the table in `folder` (the server's own
    check: without a persistent_db, a Redis tier by the row count, a hash map by each partition's
    distinct keys, read from the key file)."""
    cdef string cfolder = _bytes(folder)
    cdef string cwhere = _bytes(where)
    with nogil:
        check_table_fits_c(config.c, cfolder, dim, cwhere)


# ---- memory plan: the core's sizing formulas (hps.memory_plan composes them) ----------------------


def volatile_keys_per_partition(CoreConfig config, str folder, size_t dim, size_t last_rows):
    """Keys of the table per volatile_db partition over the files' last `last_rows` rows (repeats
    counted, except in a partition over overflow_margin, counted again with each key once)."""
    cdef string cfolder = _bytes(folder)
    cdef vector[size_t] counts
    with nogil:
        counts = volatile_keys_per_partition_c(config.c, cfolder, dim, last_rows)
    return list(counts)


def hash_map_options(CoreConfig config):
    """The hash map tier's partitions, overflow_margin and capacity under `config`."""
    cdef HashMapOptions options = HashMapOptions.from_config(config.c.volatile_db)
    return {"partitions": options.num_partitions, "overflow_margin": options.overflow_margin,
            "capacity": options.capacity()}


def hash_map_record_bytes(CoreConfig config, size_t dim):
    return HashMapOptions.from_config(config.c.volatile_db).record_bytes(dim)


def hash_map_index_slots(size_t reserved, size_t held):
    return HashMapOptions.index_slots(reserved, held)


def hash_map_footprint(CoreConfig config, size_t dim, size_t reserved, list keys):
    """Bytes of a hash map tier after reserve(`reserved`) holding min(keys[p], overflow_margin) rows in partition p."""
    cdef vector[size_t] counts = keys
    cdef HashMapOptions options = HashMapOptions.from_config(config.c.volatile_db)
    cdef HashMapFootprint plan = hash_map_footprint_c(options, dim, reserved, counts)
    return {"rows": plan.rows, "record_bytes": plan.record_bytes, "records_bytes": plan.records_bytes,
            "index_slots": plan.index_slots, "index_bytes": plan.index_bytes, "bytes": plan.total()}


def fill_rows(size_t capacity, double fill_rate, size_t table_rows):
    return fill_rows_c(capacity, fill_rate, table_rows)


def gpu_cache_capacity(bint is_static, double gpucacheper, size_t table_rows):
    return gpu_cache_capacity_c(EmbeddingCacheType.kStatic if is_static else EmbeddingCacheType.kDynamic,
                                gpucacheper, table_rows)


def dynamic_gpu_cache_size(size_t capacity, size_t dim, bint fp16):
    cdef DynamicGpuCacheSize size = dynamic_gpu_cache_size_c(capacity, dim, CacheDtype.kFloat16 if fp16 else CacheDtype.kFloat32)
    return {"sets": size.sets, "slots": size.slots, "meta_bytes": size.meta_bytes, "tag_bytes": size.tag_bytes,
            "row_bytes": size.row_bytes, "lock_bytes": size.lock_bytes, "counter_bytes": size.counter_bytes,
            "bytes": size.total()}


def static_gpu_cache_size(size_t capacity, size_t dim, bint fp16):
    cdef StaticGpuCacheSize size = static_gpu_cache_size_c(capacity, dim, CacheDtype.kFloat16 if fp16 else CacheDtype.kFloat32)
    return {"buckets": size.buckets, "entry_bytes": size.entry_bytes, "row_bytes": size.row_bytes,
            "free_row_bytes": size.free_row_bytes, "counter_bytes": size.counter_bytes, "bytes": size.total()}


def host_tier_index_size(size_t rows, size_t capacity):
    return {"slots": host_tier_index_slots(rows, capacity), "bytes": host_tier_index_bytes(rows, capacity)}


def gpu_visible_host_tier_switched_off():
    """Whether HPS_GPU_VISIBLE_HOST_TIER=0 switches the GPU-visible CPU-memory tier off (the server's rule)."""
    return gpu_visible_host_tier_switched_off_c()


def device_memory_bytes(int device):
    return cuda_device_memory_bytes(device)


def read_table(str folder, size_t dim, size_t first, size_t count, uintptr_t keys, uintptr_t rows, uintptr_t meta):
    cdef string cfolder = _bytes(folder)
    cdef unique_ptr[SparseModelReader] reader
    with nogil:
        reader.reset(new SparseModelReader(cfolder, dim))
        reader.get().read(first, count, <int64_t*>keys, <float*>rows, <int64_t*>meta)


def write_table(str folder, uintptr_t keys, uintptr_t rows, size_t n, size_t dim, uintptr_t meta):
    cdef string cfolder = _bytes(folder)
    with nogil:
        write_sparse_model(cfolder, <const int64_t*>keys, <const float*>rows, n, dim, <const int64_t*>meta)


ctypedef const void* KeyPointer

cdef enum AcquireKind:
    ACQUIRE_FILE, ACQUIRE_JSON, ACQUIRE_CONFIG, ACQUIRE_ID


cdef class Server:
    """A reference to one C++ ParameterServer of the core's process-wide registry.

    Servers are shared: every Server acquired for the same config file (or the same normalized
    config) in this process refers to the same C++ server, as do hps.torch, the C ABI and the
    adapters over it; close() drops this reference and the last one frees the server. Each call
    holds its own reference while the GIL is released, so close() on another thread never frees
    the server under a running call.
    """
    cdef shared_ptr[ParameterServer] c
    cdef readonly str server_id

    def __cinit__(self, CoreConfig config=None, observer=None, size_t lookup_threads=0):
        if config is not None:
            self._acquire(ACQUIRE_CONFIG, config.c, b"", b"", observer, lookup_threads)

    cdef _acquire(self, AcquireKind kind, const Config& config, string text, string base_dir, observer,
                  size_t lookup_threads):
        cdef ServerOptions options
        options.lookup_threads = lookup_threads
        cdef PyLoadObserver* progress = NULL
        if observer is not None:
            progress = new PyLoadObserver(observer)  # sees the load only if this acquire builds
        try:
            with nogil:
                if kind == ACQUIRE_FILE:
                    self.c = acquire_server_file(text, options, progress)
                elif kind == ACQUIRE_JSON:
                    self.c = acquire_server_json(text, base_dir, options, progress)
                elif kind == ACQUIRE_CONFIG:
                    self.c = acquire_server_config(config, options, progress)
                else:
                    self.c = acquire_server_id(text, options, progress)
        finally:
            del progress
        self.server_id = _str(registry_server_id(self.c.get()[0]))

    @staticmethod
    def acquire_file(str path, observer=None, size_t lookup_threads=0):
        """The shared server of the config file at `path` (built if none is live)."""
        cdef Server self = Server.__new__(Server)
        cdef Config unused
        self._acquire(ACQUIRE_FILE, unused, _bytes(path), b"", observer, lookup_threads)
        return self

    @staticmethod
    def acquire_json(str text, str base_dir, observer=None, size_t lookup_threads=0):
        """The shared server of config JSON text (relative paths against `base_dir`)."""
        cdef Server self = Server.__new__(Server)
        cdef Config unused
        self._acquire(ACQUIRE_JSON, unused, _bytes(text), _bytes(base_dir), observer, lookup_threads)
        return self

    @staticmethod
    def acquire_config(CoreConfig config, observer=None, size_t lookup_threads=0):
        """The shared server of a parsed config (id "hps-json:<digest>")."""
        cdef Server self = Server.__new__(Server)
        self._acquire(ACQUIRE_CONFIG, config.c, b"", b"", observer, lookup_threads)
        return self

    @staticmethod
    def acquire_id(str server_id, observer=None, size_t lookup_threads=0):
        """The live server named `server_id`, or for an absolute path the server of that file."""
        cdef Server self = Server.__new__(Server)
        cdef Config unused
        self._acquire(ACQUIRE_ID, unused, _bytes(server_id), b"", observer, lookup_threads)
        return self

    @staticmethod
    def find(str server_id):
        """The live server named `server_id`, or None (builds nothing)."""
        cdef shared_ptr[ParameterServer] found = find_server(_bytes(server_id))
        cdef Server self
        if not found:
            return None
        self = Server.__new__(Server)
        self.c = found
        self.server_id = server_id
        return self

    def config_json(self, int indent=2):
        """The normalized config the server runs."""
        return _str(config_to_json(self._get().get().config(), indent))

    cdef shared_ptr[ParameterServer] _get(self) except *:
        if not self.c:
            raise RuntimeError("this HPS server is closed")
        return self.c

    def close(self):
        cdef shared_ptr[ParameterServer] last
        last.swap(self.c)
        with nogil:
            last.reset()

    @property
    def closed(self):
        return not self.c

    @property
    def key64(self):
        return self._get().get().key64()

    @property
    def gpu_enabled(self):
        return self._get().get().gpu_enabled()

    def resolve(self, str model, table):
        """(model index, table index, dim) of a table given by name or index."""
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef TableRef ref
        if isinstance(table, str):
            ref = ps.get().find_table(_bytes(model), <string>_bytes(table))
        else:
            if table < 0:
                raise IndexError(f"table index must be >= 0, got {table}")
            ref = ps.get().find_table(_bytes(model), <size_t>table)
        return ref.model, ref.table, ps.get().dim(ref)

    def lookup(self, size_t model, size_t table, uintptr_t keys, int dtype, size_t n, uintptr_t out,
               int device=-1, uintptr_t stream=0):
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef TableRef ref
        ref.model = model
        ref.table = table
        cdef DeviceBuffers where
        where.device = device
        if device >= 0:
            where.stream = StreamView.cuda(<void*>stream)  # the caller's stream; 0 is the legacy default stream
        with nogil:
            ps.get().lookup(ref, <const void*>keys, <KeyDtype>dtype, n, <float*>out, where)

    def lookup_many(self, size_t model, list tables, list keys, int dtype, list counts, list outs,
                    int device=-1, uintptr_t stream=0):
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef size_t count = len(tables)
        if not (len(keys) == len(counts) == len(outs) == count):
            raise ValueError("lookup_many: tables, keys, counts and outs must have the same length")
        cdef vector[TableRef] refs
        cdef vector[KeyPointer] key_ptrs
        cdef vector[size_t] ns
        cdef vector[float*] out_ptrs
        refs.resize(count)
        key_ptrs.resize(count)
        ns.resize(count)
        out_ptrs.resize(count)
        cdef size_t i
        for i in range(count):
            refs[i].model = model
            refs[i].table = <size_t>tables[i]
            key_ptrs[i] = <KeyPointer><uintptr_t>keys[i]
            ns[i] = <size_t>counts[i]
            out_ptrs[i] = <float*><uintptr_t>outs[i]
        cdef DeviceBuffers where
        where.device = device
        if device >= 0:
            where.stream = StreamView.cuda(<void*>stream)  # the caller's stream; 0 is the legacy default stream
        with nogil:
            ps.get().lookup_many(count, refs.data(), key_ptrs.data(), <KeyDtype>dtype, ns.data(), out_ptrs.data(), where)

    def update(self, size_t model, size_t table, uintptr_t keys, int dtype, size_t n, uintptr_t rows):
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef TableRef ref
        ref.model = model
        ref.table = table
        with nogil:
            ps.get().update(ref, <const void*>keys, <KeyDtype>dtype, n, <const float*>rows)

    def erase(self, size_t model, size_t table, uintptr_t keys, int dtype, size_t n):
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef TableRef ref
        ref.model = model
        ref.table = table
        cdef size_t erased
        with nogil:
            erased = ps.get().erase(ref, <const void*>keys, <KeyDtype>dtype, n)
        return erased

    def refresh(self, str model):
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef string cmodel = _bytes(model)
        with nogil:
            ps.get().refresh(cmodel)

    def stats(self):
        """Per-table metrics, as the core's JSON (the same objects hps_stats_json gives C hosts)."""
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef string text
        with nogil:
            text = stats_to_json(ps.get().stats())
        return json.loads(_str(text))

    def prometheus(self):
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef string text
        with nogil:
            text = ps.get().prometheus()
        return _str(text)

    def update_source_stats(self):
        """The update sources' counters, as the core's JSON (hps_update_sources_json for C hosts)."""
        cdef shared_ptr[ParameterServer] ps = self._get()
        cdef string text
        with nogil:
            text = update_sources_to_json(ps.get().update_source_stats())
        return json.loads(_str(text))

    def drain_update_sources(self):
        cdef shared_ptr[ParameterServer] ps = self._get()
        with nogil:
            ps.get().drain_update_sources()

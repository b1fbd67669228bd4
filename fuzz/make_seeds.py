"""Writes the hand-made seed corpora of fuzz/corpus/<target>/: small valid and near-valid inputs
in each target's input layout (the layouts are described at the top of each target's source).

    python3 fuzz/make_seeds.py     # rewrites the seed_* files; other files there (kept crashers,
                                   # named crash-* or regression-*) are left alone

Needs only the standard library (the .npy/.npz seeds are written by hand, not by NumPy).
"""

import io
import json
import os
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, "seed_" + name), "wb") as f:
        f.write(data)


# ---- fuzz_config -------------------------------------------------------------------------------

MINIMAL = {"models": [{"model": "m", "sparse_files": ["table0"], "embedding_vecsize_per_table": [16]}]}
FULL = {
    "supportlonglong": True,
    "volatile_db": {"type": "hash_map", "num_partitions": 8, "allocation_rate": "128MiB",
                    "overflow_margin": 50000000, "overflow_policy": "evict_least_used",
                    "overflow_resolution_target": 0.8, "cache_missed_embeddings": True, "update_filters": [".+"]},
    "persistent_db": {"type": "rocks_db", "path": "rocksdb", "num_threads": 8, "read_only": False},
    "update_source": {"type": "kafka_message_queue", "brokers": "10.0.0.5:9092,10.0.0.6:9092"},
    "models": [{"model": "dlrm", "sparse_files": ["dlrm/sparse0", "dlrm/sparse1", "dlrm/sparse2"],
                "embedding_vecsize_per_table": [128, 128, 64], "embedding_table_names": ["users", "items", "cats"],
                "default_value_for_each_table": [0.0], "embedding_cache_dtype": ["float16", "float16", "float32"],
                "deployed_device_list": [0, 1], "gpucache": True, "gpucacheper": 0.1, "hit_rate_threshold": 0.9,
                "embedding_cache_type": "dynamic"}],
}
# A HugeCTR HPS file as Triton users write it: Redis, RocksDB, Kafka and the dense-network keys.
HUGECTR = {
    "supportlonglong": True, "fuse_embedding_table": False,
    "volatile_db": {"type": "redis_cluster", "address": "127.0.0.1:7000,127.0.0.1:7001", "user_name": "default",
                    "password": "", "num_partitions": 8, "max_batch_size": 100000, "overflow_margin": 10000000,
                    "overflow_policy": "evict_random", "overflow_resolution_target": 0.8,
                    "initial_cache_rate": 1.0, "refresh_time_after_fetch": False, "cache_missed_embeddings": False,
                    "update_filters": ["^hps_.+$"]},
    "persistent_db": {"type": "rocks_db", "path": "/tmp/rocksdb", "num_threads": 16, "read_only": False,
                      "max_batch_size": 10000, "update_filters": ["^hps_.+$"]},
    "update_source": {"type": "kafka_message_queue", "brokers": "127.0.0.1:9092", "poll_timeout_ms": 500,
                      "max_receive_buffer_size": 2000, "max_batch_size": 1000, "failure_backoff_ms": 50,
                      "max_commit_interval": 32},
    "models": [{"model": "wdl", "sparse_files": ["/wdl/0_sparse_model", "/wdl/1_sparse_model"],
                "dense_file": "/wdl/_dense_model", "network_file": "/wdl/wdl.json", "num_of_worker_buffer_in_pool": 4,
                "num_of_refresher_buffer_in_pool": 1, "deployed_device_list": [0], "max_batch_size": 64,
                "default_value_for_each_table": [0.0, 0.0], "maxnum_catfeature_query_per_table_per_sample": [2, 26],
                "embedding_vecsize_per_table": [1, 15], "embedding_table_names": ["sparse_embedding2",
                                                                                   "sparse_embedding1"],
                "hit_rate_threshold": 0.9, "gpucacheper": 0.5, "gpucache": True,
                "cache_refresh_percentage_per_iteration": 0.2, "label_dim": 1, "slot_num": 28, "use_static_table": False,
                "use_context_stream": True, "refresh_delay": 0.0, "refresh_interval": 0.0}],
}


def config_seeds():
    write("fuzz_config", "minimal.json", json.dumps(MINIMAL))
    write("fuzz_config", "full.json", json.dumps(FULL, indent=2))
    write("fuzz_config", "hugectr.json", json.dumps(HUGECTR, indent=2))
    near = {
        "unknown_key.json": '{"volatile_dbb": {}, "models": []}',
        "wrong_type.json": '{"models": [{"model": "m", "sparse_files": ["t"], "embedding_vecsize_per_table": ["4"]}]}',
        "duplicate_key.json": '{"models": [], "models": []}',
        "truncated.json": json.dumps(FULL)[:200],
        "byte_sizes.json": json.dumps({"volatile_db": {"allocation_rate": "1 GiB", "num_partitions": 1e3},
                                       **MINIMAL}),
        "bad_regex.json": json.dumps({"persistent_db": {"update_filters": ["(a"]}, **MINIMAL}),
        "broadcast.json": '{"models": [{"model": "m", "sparse_files": ["a", "b"], "embedding_vecsize_per_table": 8,'
                          ' "default_value_for_each_table": 1.5, "embedding_cache_dtype": "float16"}]}',
        "static.json": '{"models": [{"model": "m", "sparse_files": ["a"], "embedding_vecsize_per_table": [2],'
                       ' "use_static_table": true, "gpucacheper": 1e-9}]}',
        "huge_numbers.json": '{"volatile_db": {"overflow_margin": 18446744073709551615, "num_partitions": 1e300},'
                             ' "models": [{"model": "m", "sparse_files": ["a"], "embedding_vecsize_per_table": [1e19]}]}',
        "floats.json": '{"models": [{"model": "m", "sparse_files": ["a"], "embedding_vecsize_per_table": [2],'
                       ' "default_value_for_each_table": [3.4028234663852886e38]}]}',
    }
    for name, text in near.items():
        write("fuzz_config", name, text)


# ---- fuzz_table_files --------------------------------------------------------------------------

def table_input(flags, dim_field, keys, rows, meta=b"", key_bytes=None, vec_bytes=None):
    key_data = struct.pack(f"<{len(keys)}q", *keys) if key_bytes is None else key_bytes
    vec_data = struct.pack(f"<{len(rows)}f", *rows) if vec_bytes is None else vec_bytes
    return struct.pack("<BBHH", flags, dim_field, len(key_data), len(vec_data)) + key_data + vec_data + meta


def table_seeds():
    keys = [1, 2, 3, -5]
    rows = [float(i) for i in range(len(keys) * 3)]
    t = "fuzz_table_files"
    write(t, "valid_inferred", table_input(0, 0, keys, rows))
    write(t, "valid_dim_server", table_input(2 | 4, 3, keys, rows))
    write(t, "valid_meta_server", table_input(1 | 4 | (3 << 5), 0, keys, rows, struct.pack("<4q", 9, 8, 7, 6)))
    write(t, "duplicates_server", table_input(4, 0, [7, 7, 1, 7], rows))
    write(t, "truncated_vectors", table_input(2, 3, keys, rows[:-1]))
    write(t, "odd_key_bytes", table_input(0, 0, [], rows, key_bytes=b"PK\x03\x04" + b"\0" * 18))
    write(t, "wrong_dim", table_input(2, 4, keys, rows))
    write(t, "meta_short", table_input(1, 0, keys, rows, b"\1" * 8))
    write(t, "empty", table_input(0, 0, [], []))
    write(t, "empty_dim", table_input(2 | 4, 2, [], []))


# ---- fuzz_c_api --------------------------------------------------------------------------------

def call(op, dtype=1, n=0, flags=0, model=0, table=0, device=0, value=0):
    # device byte: (value % 3 == 0) takes the next byte as the device; 1 keeps the host.
    return struct.pack("<BbBBBBbB", op, dtype, n, flags, model, table, device, value)


def c_api_seeds():
    config = json.dumps({"supportlonglong": True, "volatile_db": {"type": "hash_map", "num_partitions": 2},
                         "persistent_db": {"type": "disabled"},
                         "models": [{"model": "m", "sparse_files": ["t", "u"], "embedding_vecsize_per_table": [4, 1],
                                     "embedding_table_names": ["a", "b"], "gpucache": False}]}).encode()
    keys8 = struct.pack("<4q", 0, 3, 15, 99)
    rows = struct.pack("<16f", *range(16))
    host = 1  # the device byte: 1 % 3 != 0, so host memory
    t = "fuzz_c_api"
    lookup = call(0, 1, 4, 0, 0, 0, host) + keys8
    update = call(2, 1, 4, 0, 0, 0, host) + keys8 + rows
    erase = call(3, 1, 4, 0, 0, 0, host) + keys8
    many = call(1, 1, 0, 0x80, 0, 0, host) + bytes([0, 0, 2]) + keys8[:16] + bytes([0, 1, 1]) + keys8[:8]
    by_name = call(4, 0, 0, 0, 0, 0, host) + bytes([1]) + b"m" + bytes([1]) + b"a"
    by_index = call(5, 0, 1, 0, 0, 0, host) + bytes([1]) + b"m"
    texts = b"".join(call(6, 0, i, 0, 0, 0, host) for i in range(4))
    small = call(7, 0, 0, 0, 0, 0, host) + call(8, 0, 0, 0, 0, 0, host) + bytes([1]) + b"m" + call(9)
    write(t, "session", b"\0" + config + b"\0" + lookup + update + lookup + erase + lookup + many + by_name + by_index
          + texts + small)
    write(t, "null_pointers", b"\0" + config + b"\0" + call(0, 1, 4, 1, 0, 0, host) + keys8 + call(0, 1, 4, 2, 0, 0, host)
          + keys8 + call(0, 1, 4, 4, 0, 0, host) + keys8 + call(6, 0, 0, 2, 0, 0, host) + call(7, 0, 0, 2, 0, 0, host)
          + call(1, 1, 0, 0x48, 0, 0, host) + bytes([0, 0, 1]) + keys8[:8])
    write(t, "bad_dtype_table_device", b"\0" + config + b"\0" + call(0, 9, 2, 0, 0, 0, host) + keys8[:16]
          + call(0, -1, 2, 0, 0, 0, host) + keys8[:16] + call(0, 1, 2, 0, 3, 3, host) + keys8[:16]
          + call(0, 1, 2, 0, 0, 0, 0, 0) + keys8[:16] + call(2, 1, 2, 0, 0, 5, host) + keys8[:16] + rows[:32])
    write(t, "int32_keys", b"\0" + config.replace(b'"supportlonglong": true', b'"supportlonglong": false') + b"\0"
          + call(0, 0, 4, 0, 0, 0, host) + struct.pack("<4i", 0, -1, 15, 2**31 - 1)
          + call(0, 3, 2, 0, 0, 0, host) + struct.pack("<2Q", 2**40, 1))
    write(t, "options", bytes([2 | (3 << 4)]) + config + b"\0")
    write(t, "options_conflict", bytes([4 | 8]) + config + b"\0" + lookup)
    write(t, "bad_json", b"\0" + b'{"models": [' + b"\0")
    write(t, "missing_table", b"\0" + config.replace(b'"t", "u"', b'"t", "nope"') + b"\0")


# ---- fuzz_kafka_message ------------------------------------------------------------------------

def message(keys, rows, key_size, dim):
    out = b"HCTR" + struct.pack("<I", 4 * dim)
    for i, k in enumerate(keys):
        out += struct.pack("<q" if key_size == 8 else "<I", k) + struct.pack(f"<{dim}f", *rows[i * dim:(i + 1) * dim])
    return out


def kafka_seeds():
    t = "fuzz_kafka_message"
    write(t, "int64_pairs", bytes([1 | (2 << 1)]) + message([1, -2, 3], [float(i) for i in range(6)], 8, 2))
    write(t, "uint32_pairs", bytes([0]) + message([1, 2**32 - 1], [0.5] * 8, 4, 4))
    write(t, "beacon", bytes([1]) + b"HCTR" + struct.pack("<I", 16))
    write(t, "wrong_magic", bytes([1]) + b"HUGE" + struct.pack("<I", 4) + b"\0" * 12)
    write(t, "truncated_pair", bytes([1]) + message([5], [1.0, 2.0], 8, 2)[:-3])
    write(t, "value_size_3", bytes([0]) + b"HCTR" + struct.pack("<I", 3) + b"\0" * 7)
    write(t, "dim_mismatch", bytes([1 | (5 << 1)]) + message([5], [1.0, 2.0], 8, 2))
    write(t, "topic", bytes([0]) + b"hps_et.model.sparse_embedding0")
    write(t, "topic_dots", bytes([0]) + b"hps_et.m.t.x.")


# ---- fuzz_trt_state / fuzz_trt_fields ------------------------------------------------------------

def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def state(config_file, model, table_id, dim, output, version=1):
    payload = (struct.pack("<I", len(config_file)) + config_file + struct.pack("<I", len(model)) + model
               + struct.pack("<ii", table_id, dim) + bytes([output]))
    return b"HPST" + struct.pack("<HHII", version, 0, len(payload), fnv1a(payload)) + payload


def trt_seeds():
    t = "fuzz_trt_state"
    good = state(b"/models/ps.json", b"wdl", 1, 16, 0)
    write(t, "valid", b"\0" + good)
    write(t, "valid_float16", b"\0" + state(b"ps.json", b"m", 0, 1, 1))
    write(t, "fix_checksum_bad_strings", b"\1" + good[:16] + struct.pack("<I", 1000) + b"x")
    write(t, "nul_in_string", b"\0" + state(b"a\0b", b"m", 0, 4, 0))
    write(t, "negative_table", b"\0" + state(b"ps.json", b"m", -1, 4, 0))
    write(t, "output_type_7", b"\1" + state(b"ps.json", b"m", 0, 4, 7))
    write(t, "version_2", b"\0" + state(b"ps.json", b"m", 0, 4, 0, version=2))
    write(t, "foreign_magic", b"\0" + b"HCTR" + good[4:])
    write(t, "truncated", b"\0" + good[:-1])
    write(t, "header_only", b"\1" + good[:16])

    def field(name, type_, length, data=b"", no_data=False):
        return struct.pack("<BbbB", name, type_, length, 1 if no_data else 0) + data

    f = "fuzz_trt_fields"
    four = (field(0, 6, 8, b"ps.json\0") + field(1, 6, 3, b"wdl") + field(2, 5, 1, struct.pack("<i", 1))
            + field(3, 5, 1, struct.pack("<i", 16)))
    write(f, "huge_ctr_four", four)
    write(f, "int64_float16", field(0, 6, 7, b"ps.json") + field(1, 6, 1, b"m") + field(2, 10, 1, struct.pack("<q", 0))
          + field(3, 10, 1, struct.pack("<q", 2)) + field(4, 6, 7, b"float16"))
    write(f, "missing", field(0, 6, 7, b"ps.json") + field(1, 6, 1, b"m"))
    write(f, "twice", four + field(3, 5, 1, struct.pack("<i", 16)))
    write(f, "unknown_name", four + field(5, 6, 4, b"junk"))
    write(f, "null_name_and_data", field(6, 6, 1, b"x") + field(0, 6, 7, b"", no_data=True))
    write(f, "wrong_types", field(0, 5, 1, b"\0\0\0\0") + field(2, 6, 1, b"1") + field(3, 1, 1, b"\0\0\x80\x3f"))
    write(f, "bad_lengths", field(0, 6, -3, b"") + field(2, 5, 2, b"\0" * 8) + field(3, 5, 0, b""))
    write(f, "bad_dtype", four + field(4, 6, 7, b"bfloat8"))


# ---- fuzz_convert ------------------------------------------------------------------------------

def npy(dtype, shape, data, fortran=False, version=(1, 0)):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (dtype, fortran, repr(tuple(shape)))
    size_format = "<H" if version == (1, 0) else "<I"
    prefix = 10 if version == (1, 0) else 12
    pad = (64 - (prefix + len(header) + 1) % 64) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_format, len(header)) + header.encode("latin1") + data


def npz(members, compressed=False):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return buffer.getvalue()


def convert_seeds():
    t = "fuzz_convert"
    keys = npy("<i8", (3,), struct.pack("<3q", 5, 6, 5))
    rows = npy("<f4", (3, 2), struct.pack("<6f", *range(6)))
    meta = npy("<i8", (3,), struct.pack("<3q", 1, 2, 3))
    # mode byte: 0 an .npz input, 1 an .npy dense matrix, 2 keys + rows .npy (u32 length of the keys file first)
    write(t, "npz", b"\0" + npz({"keys": keys, "rows": rows}))
    write(t, "npz_compressed_meta", b"\0" + npz({"key": keys, "emb_vector": rows, "meta": meta}, compressed=True))
    write(t, "npz_fortran_v2", b"\0" + npz({"keys": keys, "values": npy("<f8", (3, 2), struct.pack("<6d", *range(6)),
                                                                       fortran=True, version=(2, 0))}))
    write(t, "npz_missing_rows", b"\0" + npz({"keys": keys, "other": rows}))
    write(t, "npz_truncated_member", b"\0" + npz({"keys": keys, "rows": rows[:-5]}))
    write(t, "npz_huge_shape", b"\0" + npz({"keys": npy("<i8", (2**40,), b""), "rows": npy("<f4", (2**40, 4), b"")}))
    write(t, "npz_object", b"\0" + npz({"keys": npy("|O", (1,), b""), "rows": rows}))
    write(t, "dense", b"\1" + npy("<f4", (2, 3), struct.pack("<6f", *range(6))))
    write(t, "dense_1d", b"\1" + npy("<f4", (3,), struct.pack("<3f", 1, 2, 3)))
    write(t, "dense_bad_header", b"\1" + b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}")
    write(t, "pair", b"\2" + struct.pack("<I", len(keys)) + keys + rows)
    write(t, "pair_uint64_big", b"\2" + struct.pack("<I", len(keys)) + npy("<u8", (3,), struct.pack("<3Q", 2**64 - 1, 0, 1))
          + rows)
    write(t, "pair_count_mismatch", b"\2" + struct.pack("<I", len(keys)) + keys + npy("<f4", (2, 2), b"\0" * 16))
    write(t, "not_zip", b"\0" + b"PK\x03\x04garbage")


if __name__ == "__main__":
    config_seeds()
    table_seeds()
    c_api_seeds()
    kafka_seeds()
    trt_seeds()
    convert_seeds()
    for target in sorted(os.listdir(CORPUS)):
        print(target, len(os.listdir(os.path.join(CORPUS, target))), "files")

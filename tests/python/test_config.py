"""hps.Config: file, dict or Config; strict errors with JSON paths; compatibility warnings."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import hps
from conftest import config_for


def write(tmp_path, text, name="ps.json"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_file_dict_and_config_are_equivalent(tmp_path, table):
    config = config_for([table])
    path = write(tmp_path, json.dumps(config))
    from_file, from_dict = hps.Config(path), hps.Config(config)
    assert from_file.to_dict() == from_dict.to_dict() == hps.Config(from_file).to_dict()
    assert from_file.source == path and from_dict.source == "<dict>"
    with hps.HPS(from_file) as ps:
        assert ps.dim("m", 0) == table.dim


def test_relative_paths_resolve_against_the_config_folder(tmp_path, table):
    config = config_for([table])
    config["models"][0]["sparse_files"] = ["t0"]  # the fixture's folder, relative
    path = write(tmp_path, json.dumps(config))
    assert hps.Config(path).models[0]["sparse_files"] == [table.folder]


def test_defaults_are_filled_in(table):
    normalized = hps.Config({"models": [{"model": "m", "sparse_files": [table.folder],
                                         "embedding_vecsize_per_table": [8]}]}).to_dict()
    assert normalized["supportlonglong"] is True
    assert normalized["volatile_db"]["type"] == "hash_map"
    assert normalized["persistent_db"]["type"] == "disabled"
    model = normalized["models"][0]
    assert model["embedding_table_names"] == ["sparse_embedding0"]
    assert model["default_value_for_each_table"] == [0.0]
    assert model["gpucacheper"] == pytest.approx(0.2)


@pytest.mark.parametrize("text, pattern", [
    ('{"models": [}', r"line 1, column 13: invalid JSON"),
    ('{"peristent_db": {}, "models": []}', r"peristent_db.*did you mean 'persistent_db'"),
    ('{"models": [{"model": "m", "sparse_files": ["x"], "embedding_vecsize_per_table": [4], "gpucacheperr": 0.5}]}',
     r"models\[0\]\.gpucacheperr.*did you mean 'gpucacheper'"),
    ('{"models": [{"model": "m", "sparse_files": ["x"], "embedding_vecsize_per_table": [4], "gpucacheper": 1.5}]}',
     r"models\[0\]\.gpucacheper.*1\.5"),
    ('{"models": [{"model": "m", "sparse_files": ["x"], "embedding_vecsize_per_table": ["4"]}]}',
     r"models\[0\]\.embedding_vecsize_per_table\[0\]"),
    ('{"models": [{"model": "m", "sparse_files": ["x", "y"], "embedding_vecsize_per_table": [4]}]}',
     r"sparse_files"),
    ('{"volatile_db": {"type": "hashmapp"}, "models": [{"model": "m", "sparse_files": ["x"], '
     '"embedding_vecsize_per_table": [4]}]}', r"volatile_db\.type.*hash_map"),
    ('{"models": []}', r"models"),
    ('{"persistent_db": {"type": "rocks_db", "block_cache_size": "32 MB please"}, "models": [{"model": "m", '
     '"sparse_files": ["x"], "embedding_vecsize_per_table": [4]}]}',
     r"persistent_db\.block_cache_size: expected a byte size .*\"32 MB please\""),
    ('{"persistent_db": {"type": "rocks_db", "block_cache_size": 0}, "models": [{"model": "m", '
     '"sparse_files": ["x"], "embedding_vecsize_per_table": [4]}]}',
     r"persistent_db\.block_cache_size: expected a byte size \(an integer >= 1.*found 0"),
    ('{"persistent_db": {"type": "rocks_db", "memtable_size": "512KiB"}, "models": [{"model": "m", '
     '"sparse_files": ["x"], "embedding_vecsize_per_table": [4]}]}',
     r"persistent_db\.memtable_size: expected a byte size \(an integer >= 1048576.*found \"512KiB\""),
])
def test_invalid_configs_name_the_path(tmp_path, text, pattern):
    with pytest.raises(hps.ConfigError, match=pattern):
        hps.Config(write(tmp_path, text))
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        hps.Config(write(tmp_path, text))


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="nope.json"):
        hps.Config(str(tmp_path / "nope.json"))


def test_wrong_source_type():
    with pytest.raises(TypeError, match="file path, a dict or an hps.Config"):
        hps.Config(42)


def test_hugectr_only_keys_warn_that_they_do_nothing(table):
    config = config_for([table], max_batch_size=1024, num_of_worker_buffer_in_pool=4)
    with pytest.warns(hps.ConfigWarning, match=r"models\[0\]\.max_batch_size") as caught:
        parsed = hps.Config(config)
    assert any("num_of_worker_buffer_in_pool" in str(w.message) for w in caught)
    assert len(parsed.warnings) == 2


def test_a_triton_models_dense_network_keys_load_with_warnings(table, tmp_path):
    dense = {"network_file": "dlrm.json", "label_dim": 1, "slot_num": 26, "non_trainable_params_file": "nt.json",
             "use_mixed_precision": True, "scaler": 1024.0, "use_algorithm_search": True, "use_cuda_graph": False}
    with pytest.warns(hps.ConfigWarning) as caught:
        parsed = hps.Config(config_for([table], **dense))
    assert len(parsed.warnings) == len(dense)
    for key in dense:
        assert any(f"models[0].{key}" in str(w.message) and "dense network" in str(w.message) for w in caught), key
    with pytest.warns(hps.ConfigWarning), hps.HPS(config_for([table], **dense)) as ps:  # and the server runs
        np.testing.assert_array_equal(ps.lookup("m", 0, table.keys[:5]), table.expected(table.keys[:5]))


def test_a_clean_config_warns_nothing(table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hps.Config(config_for([table]))


def test_json_schema_covers_the_format():
    schema = hps.json_schema()
    assert schema["additionalProperties"] is False
    assert "models" in schema["required"]
    model = schema["properties"]["models"]["items"]
    assert {"model", "sparse_files", "embedding_vecsize_per_table"} <= set(model["required"])
    assert "gpucacheper" in model["properties"]
    assert "overflow_policy" in schema["properties"]["volatile_db"]["properties"]

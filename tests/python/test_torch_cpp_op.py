"""The C++ op library (libhps_torch_ops.so): hps::lookup and hps_torch::hps_embedding_lookup against
nn.Embedding and the Python op, their errors, and a TorchScript model run from a C++ program
without Python. Skipped where the library was not built (hps.torch.OP_BACKEND == "python")."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hps  # noqa: E402
import hps.torch  # noqa: E402
from hps.torch import LookupLayer, _library  # noqa: E402
from hps.torch._flags import torch_flags  # noqa: E402

pytestmark = [pytest.mark.usefixtures("fresh_torch_servers"),
              pytest.mark.skipif(hps.torch.OP_BACKEND != "cpp", reason="the C++ op library is not built")]

D = 8
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def config(tmp_path):
    """A config file with a 300-row table of row-index keys; returns (path, weights)."""
    w = np.random.default_rng(3).standard_normal((300, D), dtype=np.float32)
    hps.write_sparse_model(tmp_path / "t0", np.arange(300), w)
    path = tmp_path / "ps.json"
    path.write_text(json.dumps({"models": [{"model": "m", "sparse_files": ["t0"], "embedding_vecsize_per_table": [D]}]}))
    return str(path), torch.from_numpy(w)


def test_the_op_is_the_cpp_one():
    assert _library.library_path and os.path.isfile(_library.library_path)
    assert "hps::lookup" in str(torch.ops.hps.lookup.default._schema)
    assert str(torch.ops.hps_torch.hps_embedding_lookup.default._schema) == (
        "hps_torch::hps_embedding_lookup(Tensor input, str ps_config_file, str model_name, int table_id, "
        "int emb_vec_size) -> Tensor")
    if hasattr(torch.Tag, "cudagraph_unsafe"):  # kept out of CUDA graphs, as the Python op is
        assert torch.Tag.cudagraph_unsafe in torch.ops.hps.lookup.default.tags
        assert torch.Tag.cudagraph_unsafe in torch.ops.hps_torch.hps_embedding_lookup.default.tags


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (0, 2), ()])
def test_rows_match_nn_embedding_and_the_core(config, shape, dtype):
    path, w = config
    keys = torch.randint(0, 300, shape, dtype=dtype)
    rows = torch.ops.hps.lookup(keys, os.path.abspath(path), "m", 0, D)
    assert rows.shape == (*shape, D) and rows.dtype == torch.float32
    torch.testing.assert_close(rows, torch.nn.functional.embedding(keys.long(), w), rtol=0, atol=0)
    core = hps.torch.get_server(path).lookup("m", 0, keys.numpy().reshape(-1))
    np.testing.assert_array_equal(rows.reshape(-1, D).numpy(), core)


def test_hugectr_op_name_and_relative_path(config, monkeypatch):
    path, w = config
    monkeypatch.chdir(os.path.dirname(path))
    keys = torch.tensor([[0, 5], [299, 7]])
    rows = torch.ops.hps_torch.hps_embedding_lookup(keys, "ps.json", "m", 0, D)
    torch.testing.assert_close(rows, w[keys], rtol=0, atol=0)
    # Another folder's ps.json is another server (the relative path is resolved per call).
    other = os.path.join(os.path.dirname(path), "other")
    w2 = np.full((300, D), 7.0, dtype=np.float32)
    hps.write_sparse_model(os.path.join(other, "t0"), np.arange(300), w2)
    with open(os.path.join(other, "ps.json"), "w") as f:
        json.dump({"models": [{"model": "m", "sparse_files": ["t0"], "embedding_vecsize_per_table": [D]}]}, f)
    monkeypatch.chdir(other)
    torch.testing.assert_close(torch.ops.hps_torch.hps_embedding_lookup(keys, "ps.json", "m", 0, D),
                               torch.full((2, 2, D), 7.0), rtol=0, atol=0)


def test_non_contiguous_keys(config):
    path, w = config
    keys = torch.arange(40).reshape(5, 8).t()[::2]
    torch.testing.assert_close(torch.ops.hps.lookup(keys, path, "m", 0, D), w[keys], rtol=0, atol=0)


def test_opcheck(config):
    keys = torch.randint(0, 300, (4, 3))
    torch.library.opcheck(torch.ops.hps.lookup.default, (keys, config[0], "m", 0, D))
    torch.library.opcheck(torch.ops.hps_torch.hps_embedding_lookup.default, (keys, config[0], "m", 0, D))


def test_library_links_the_shared_libstdcxx():
    """A toolchain that links libstdc++ statically by default gave the library a private copy, and
    formatting a number into an error message crashed (the GPU machine's GCC): _flags names the
    shared one torch runs with."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("no readelf")
    dynamic = subprocess.run([readelf, "-d", _library.library_path], capture_output=True, text=True, check=True).stdout
    assert "libstdc++.so" in dynamic, dynamic


def test_errors_name_the_status(config):
    path = config[0]
    keys = torch.tensor([1, 2])
    with pytest.raises(TypeError, match="int32 or int64"):
        torch.ops.hps.lookup(keys.float(), path, "m", 0, D)
    with pytest.raises(ValueError, match="HPS_ERROR_INVALID_ARGUMENT: emb_vec_size 4 does not match"):
        torch.ops.hps.lookup(keys, path, "m", 0, 4)
    with pytest.raises(IndexError, match="HPS_ERROR_NOT_FOUND"):
        torch.ops.hps.lookup(keys, path, "m", 3, D)
    with pytest.raises(IndexError, match="HPS_ERROR_NOT_FOUND.*nomodel"):
        torch.ops.hps.lookup(keys, path, "nomodel", 0, D)
    with pytest.raises(IndexError, match="no parameter server 'hps-json:999999'"):
        torch.ops.hps.lookup(keys, "hps-json:999999", "m", 0, D)
    with pytest.raises(RuntimeError, match="HPS_ERROR_IO.*missing"):
        torch.ops.hps.lookup(keys, path + ".missing", "m", 0, D)


def test_compile_and_export_with_the_cpp_op(config, tmp_path):
    path, w = config
    layer = LookupLayer(path, "m", 0, D).eval()
    keys = torch.randint(0, 300, (6, 2))
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(keys), w[keys], rtol=0, atol=0)
    program = torch.export.export(layer, (keys,))
    torch.export.save(program, tmp_path / "m.pt2")
    loaded = torch.export.load(tmp_path / "m.pt2").module()
    torch.testing.assert_close(loaded(keys), w[keys], rtol=0, atol=0)


def test_python_op_gives_the_same_rows(config):
    """The fallback (HPS_TORCH_OP=python) in a fresh process, against this process's C++ op."""
    path, _ = config
    keys = torch.randint(0, 300, (9,))
    script = (f"import json, torch, hps.torch; assert hps.torch.OP_BACKEND == 'python'; k = torch.tensor({keys.tolist()}); "
              f"print(json.dumps([torch.ops.hps.lookup(k, {path!r}, 'm', 0, {D}).tolist(), "
              f"torch.ops.hps_torch.hps_embedding_lookup(k, 'ps.json', 'm', 0, {D}).tolist()]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HPS_TORCH_OP="python", HPS_PROGRESS="0"), cwd=os.path.dirname(path))
    assert done.returncode == 0, done.stderr[-2000:]
    python_rows, hugectr_rows = json.loads(done.stdout)
    cpp_rows = torch.ops.hps.lookup(keys, path, "m", 0, D)
    torch.testing.assert_close(torch.tensor(python_rows), cpp_rows, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(hugectr_rows), cpp_rows, rtol=0, atol=0)


class Scripted(torch.nn.Module):
    """A model as HugeCTR users wrote them: a LookupLayer, a direct hps_torch op call, dense work."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.layer = LookupLayer(path, "m", 0, D)
        self.linear = torch.nn.Linear(2 * D, 3)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        direct = torch.ops.hps_torch.hps_embedding_lookup(keys, self.path, "m", 0, 8)
        return self.linear(torch.cat([self.layer(keys), direct], dim=1))


@pytest.fixture(scope="module")
def run_model(tmp_path_factory):
    """tests/torch_cpp/run_model.cpp, built once against this torch (about 45 s)."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler")
    compile_flags, link_flags, _, _ = torch_flags()
    program = tmp_path_factory.mktemp("run_model") / "run_model"
    build = subprocess.run([os.environ.get("CXX", "g++"), "-std=c++17", "-O1",
                            os.path.join(HERE, "..", "torch_cpp", "run_model.cpp"), "-o", str(program),
                            *compile_flags, *link_flags, "-ldl"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    return str(program)


def run_from_cpp(program: str, model_file, inputs: tuple) -> torch.Tensor:
    """The model's first output, run by run_model on `inputs`, as [rows, -1]."""
    inputs_file = os.path.join(os.path.dirname(str(model_file)), "inputs.txt")
    with open(inputs_file, "w") as f:
        for t in inputs:  # float32 as repr (exact through double), int64 as ints
            kind = "int64" if t.dtype == torch.int64 else "float32"
            values = t.reshape(-1).tolist()
            f.write(f"{kind} {t.dim()} {' '.join(map(str, t.shape))}\n{' '.join(map(repr, values))}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    # Torch 2.11's AOTInductor loader dlopens libtorch.so by name, which the program's rpath did not
    # reach on the GPU machine: deployed C++ hosts put torch's lib folder on the search path (docs/torch.md).
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (torch_lib, env.get("LD_LIBRARY_PATH", "")) if p)
    done = subprocess.run([program, _library.library_path, str(model_file), inputs_file],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.tensor([[float(x) for x in line.split()] for line in done.stdout.splitlines()])


@pytest.mark.slow
def test_scripted_model_runs_from_cpp_without_python(config, tmp_path, run_model):
    path, _ = config
    torch.manual_seed(0)
    model = Scripted(path).eval()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    keys = torch.tensor([0, 17, 299, 5, 5])
    with torch.no_grad():
        expected = model(keys)
    torch.testing.assert_close(run_from_cpp(run_model, tmp_path / "model.pt", (keys,)), expected, rtol=0, atol=1e-6)


def load_dlrm_example():
    spec = importlib.util.spec_from_file_location("dlrm_torch", os.path.join(HERE, "..", "..", "examples",
                                                                           "dlrm_torch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dlrm_aoti_package_runs_from_cpp_without_python(tmp_path, run_model):
    """examples/dlrm_torch.py's DLRM with its 26 tables in hps, AOTInductor-packaged, run from C++."""
    dlrm = load_dlrm_example()
    torch.manual_seed(0)
    rows = [int(n) for n in np.random.default_rng(0).integers(50, 500, dlrm.SPARSE)]
    model = dlrm.DLRM(rows, 8, bottom=(16,), top=(16,))
    dlrm.train(model, dlrm.SyntheticClicks(rows, 0), 5, batch=64)
    config = hps.torch.export_tables(model.eval(), tmp_path / "tables", "dlrm")
    served = hps.torch.swap_embeddings(copy.deepcopy(model), config).eval()
    dense, sparse, _ = dlrm.SyntheticClicks(rows, 1).batch(32)
    with torch.no_grad():
        expected = served(dense, sparse)
        torch.testing.assert_close(expected, model(dense, sparse), rtol=0, atol=1e-5)
        program = torch.export.export(served, (dense, sparse))
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "dlrm.pt2"))
    got = run_from_cpp(run_model, package, (dense, sparse))
    torch.testing.assert_close(got.reshape(-1), expected, rtol=0, atol=1e-5)

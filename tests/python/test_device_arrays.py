"""Device arrays without a GPU: the stream argument, __cuda_array_interface__ dicts, DLPack capsules,
the adapter registry and the errors, on fake objects (no device pointer ever reaches the core).

The GPU half (real lookups through these paths, compared to the host bit for bit) is test_gpu_arrays.py.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import numpy as np
import pytest

import hps
from hps import array_adapters
from hps._cuda_array_interface import parse_cuda_array_interface
from hps._dlpack import DLManagedTensor, DLManagedTensorVersioned, parse_dlpack_capsule
from hps._streams import stream_handle
from hps.array_adapters import CUDA_ARRAY_PROTOCOLS, ArrayAdapter, DeviceKeys, adapter_for, device_view
from conftest import config_for

# ---- fakes ----------------------------------------------------------------------------------------

ADDRESS = 0x7F0000001000  # never dereferenced: these tests stop before the core


def cai(shape=(4,), typestr="<i8", address=ADDRESS, version=3, **fields):
    d = {"version": version, "shape": shape, "typestr": typestr, "data": (address, False), "strides": None}
    d.update(fields)
    return d


class FakeCAI:
    """An array that only has __cuda_array_interface__ (like Numba's device arrays)."""

    def __init__(self, **kwargs):
        self.__cuda_array_interface__ = cai(**kwargs)


class FakeCAIWithDevice(FakeCAI):
    def __init__(self, device=1, **kwargs):
        super().__init__(**kwargs)
        self.device = device

    def __dlpack_device__(self):
        return (2, self.device)


_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype, _PyCapsule_New.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
NAMES = {False: b"dltensor", True: b"dltensor_versioned"}  # PyCapsule keeps the pointer: these must live on


def fake_capsule(shape, code=0, bits=64, device=(2, 0), address=ADDRESS, strides=None, byte_offset=0,
                 versioned=False, flags=0, major=1):
    """(capsule, keepalive) of a DLPack tensor that claims to live on `device`."""
    managed = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    if versioned:
        managed.version.major, managed.version.minor, managed.flags = major, 0, flags
    t = managed.dl_tensor
    shape_array = (ctypes.c_int64 * max(1, len(shape)))(*shape)
    strides_array = None if strides is None else (ctypes.c_int64 * max(1, len(strides)))(*strides)
    t.data, t.byte_offset = address, byte_offset
    t.device.device_type, t.device.device_id = device
    t.ndim = len(shape)
    t.dtype.code, t.dtype.bits, t.dtype.lanes = code, bits, 1
    t.shape = ctypes.cast(shape_array, ctypes.POINTER(ctypes.c_int64))
    if strides_array is not None:
        t.strides = ctypes.cast(strides_array, ctypes.POINTER(ctypes.c_int64))
    capsule = _PyCapsule_New(ctypes.addressof(managed), NAMES[versioned], None)
    return capsule, (managed, shape_array, strides_array)


class FakeDLPack:
    """An array that only speaks DLPack, on a CUDA device; records the streams it was asked for."""

    def __init__(self, shape=(4,), device=(2, 0), versioned_producer=True, **capsule_kwargs):
        self.shape, self.device, self.versioned_producer = shape, device, versioned_producer
        self.capsule_kwargs = capsule_kwargs
        self.streams = []

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, stream=None, **kwargs):
        if kwargs and not self.versioned_producer:
            raise TypeError("__dlpack__() got an unexpected keyword argument 'max_version'")
        self.streams.append(stream)
        capsule, self.keep = fake_capsule(self.shape, device=self.device, versioned="max_version" in kwargs,
                                          **self.capsule_kwargs)
        return capsule


class Stream:
    def __init__(self, handle, version=0, as_property=False):
        answer = (version, handle)
        if as_property:
            self.__cuda_stream__ = answer
        else:
            self.__cuda_stream__ = lambda: answer


@pytest.fixture
def driver_calls(monkeypatch):
    """Records the CUDA driver calls the generic path makes (there is no driver here)."""
    import hps._cuda_driver as driver

    calls = []
    monkeypatch.setattr(driver, "stream_wait", lambda device, consumer, producer: calls.append(
        ("wait", device, consumer, producer)))
    monkeypatch.setattr(driver, "pointer_device", lambda address, what="keys": calls.append(("device", address)) or 0)
    return calls


# ---- the stream argument ---------------------------------------------------------------------------

@pytest.mark.parametrize("given, handle", [(None, None), (0, 0), (1, 1), (2, 2), (0x55D0C0DE, 0x55D0C0DE),
                                           (np.uint64(2**63 + 5), 2**63 + 5), (Stream(77), 77),
                                           (Stream(78, as_property=True), 78)])
def test_stream_argument_forms(given, handle):
    assert stream_handle(given) == handle


@pytest.mark.parametrize("given, message", [
    (True, "stream must name a CUDA stream; got bool"),
    (1.0, "stream must name a CUDA stream; got float"),
    ("0x10", "__cuda_stream__"),
    (-1, r"in \[0, 2\*\*64\), got -1"),
    (2**64, r"got 18446744073709551616"),
    (Stream(5, version=1), "has version 1; hps reads version 0"),
    (Stream(True), "gave handle True, expected an int"),
])
def test_bad_stream_arguments_are_named(given, message):
    with pytest.raises(hps.InvalidArgumentError, match=message):
        stream_handle(given)


def test_cuda_stream_protocol_answer_must_be_a_pair():
    class Odd:
        def __cuda_stream__(self):
            return 5

    with pytest.raises(hps.InvalidArgumentError, match=r"must give \(version, handle\), got 5"):
        stream_handle(Odd())


# ---- __cuda_array_interface__ ------------------------------------------------------------------------

def test_cai_fields_are_read():
    view = parse_cuda_array_interface(cai(shape=(2, 3), typestr="<u4", stream=1234))
    assert (view.address, view.dtype, view.shape, view.readonly, view.stream, view.size) == (
        ADDRESS, np.dtype(np.uint32), (2, 3), False, 1234, 6)
    assert parse_cuda_array_interface(cai(version=2)).stream is None  # v2: no stream to wait for
    assert parse_cuda_array_interface(cai(data=(ADDRESS, True))).readonly


@pytest.mark.parametrize("strides", [None, (24, 8), (24, 8)])
def test_cai_c_contiguous_strides(strides):
    assert parse_cuda_array_interface(cai(shape=(5, 3), strides=strides)).shape == (5, 3)


def test_cai_strides_of_extent_one_and_empty_arrays_do_not_matter():
    parse_cuda_array_interface(cai(shape=(1, 3), strides=(999, 8)))  # torch reports such strides
    parse_cuda_array_interface(cai(shape=(0, 3), strides=(8, 16)))
    parse_cuda_array_interface(cai(shape=(0,), address=0))  # no memory for nothing


@pytest.mark.parametrize("fields, message", [
    (dict(version=1), r"version must be one of \(2, 3\), found 1"),
    (dict(version=None), "found None"),
    (dict(shape=[4]), "shape must be a tuple of non-negative ints, found \\[4\\]"),
    (dict(shape=(-1,)), "found \\(-1,\\)"),
    (dict(typestr="<zz"), "typestr '<zz' is not a NumPy type string"),
    (dict(typestr=">i8"), "is big-endian"),
    (dict(data=(ADDRESS,)), r"data must be \(pointer, read_only\)"),
    (dict(address=0), "data pointer is 0 for 4 elements"),
    (dict(mask=(1, 2)), "has a mask"),
    (dict(strides=[8]), "strides must be None or a tuple of ints"),
    (dict(stream=0), "stream is 0, which the spec disallows"),
    (dict(stream=1.5), "stream must be None or an int, found 1.5"),
])
def test_bad_cai_is_named(fields, message):
    if "address" in fields:
        iface = cai(address=fields["address"])
    else:
        iface = cai(**fields)
    with pytest.raises(hps.InvalidArgumentError, match=message):
        parse_cuda_array_interface(iface, "keys")


def test_non_contiguous_cai_names_expected_and_found_strides():
    with pytest.raises(hps.InvalidArgumentError,
                       match=r"keys must be C-contiguous: shape \(5, 3\) of int64 wants strides \(24, 8\) "
                             r"\(or None\), found \(8, 40\)"):
        parse_cuda_array_interface(cai(shape=(5, 3), strides=(8, 40)))


def test_cai_must_be_a_dict():
    with pytest.raises(hps.InvalidArgumentError, match="must be a dict, got list"):
        parse_cuda_array_interface([1, 2])


# ---- DLPack capsules -------------------------------------------------------------------------------

def test_numpy_capsules_are_read_in_place():
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    view = parse_dlpack_capsule(array.__dlpack__())
    assert (view.address, view.dtype, view.shape, view.device_type, view.readonly) == (
        array.ctypes.data, np.dtype(np.int64), (3, 4), 1, False)
    try:
        versioned = array.__dlpack__(max_version=(1, 0))
    except TypeError:
        pytest.skip("this NumPy exports no versioned capsules")
    assert parse_dlpack_capsule(versioned).address == array.ctypes.data
    frozen = np.arange(3, dtype=np.int32)
    frozen.flags.writeable = False
    assert parse_dlpack_capsule(frozen.__dlpack__(max_version=(1, 0))).readonly


def test_numpy_views_with_offset_and_strides():
    array = np.arange(40, dtype=np.int32).reshape(4, 10)
    view = parse_dlpack_capsule(array[2:].__dlpack__())
    assert view.address == array[2:].ctypes.data and view.shape == (2, 10)
    with pytest.raises(hps.InvalidArgumentError, match=r"keys must be C-contiguous: DLPack tensor of shape "
                                                       r"\(4, 5\) has strides \(10, 2\)"):
        parse_dlpack_capsule(array[:, ::2].__dlpack__())


@pytest.mark.parametrize("versioned", [False, True])
def test_cuda_capsule_fields(versioned):
    capsule, keep = fake_capsule((2, 3), code=1, bits=32, device=(2, 3), byte_offset=64, versioned=versioned,
                                 strides=(3, 1))
    view = parse_dlpack_capsule(capsule)
    assert (view.address, view.dtype, view.shape, view.device_type, view.device) == (
        ADDRESS + 64, np.dtype(np.uint32), (2, 3), 2, 3)


def test_read_only_flag_of_versioned_capsules():
    capsule, keep = fake_capsule((3,), versioned=True, flags=1)
    assert parse_dlpack_capsule(capsule).readonly


@pytest.mark.parametrize("kwargs, message", [
    (dict(code=6, bits=8), r"DLPack dtype \(code 6, bits 8, lanes 1\) is not an integer or float type"),
    (dict(code=0, bits=4), "bits 4"),
    (dict(versioned=True, major=2), "DLPack capsule has version 2.0; hps reads major version 1"),
])
def test_bad_capsules_are_named(kwargs, message):
    capsule, keep = fake_capsule((3,), **kwargs)
    with pytest.raises(hps.InvalidArgumentError, match=message):
        parse_dlpack_capsule(capsule)


def test_a_consumed_capsule_or_a_non_capsule_is_refused():
    with pytest.raises(hps.InvalidArgumentError, match="must return a PyCapsule, got int"):
        parse_dlpack_capsule(5)
    used = _PyCapsule_New(ADDRESS, b"used_dltensor", None)
    with pytest.raises(hps.InvalidArgumentError, match="named b'used_dltensor'; expected 'dltensor'"):
        parse_dlpack_capsule(used)


# ---- the generic protocols: device and stream --------------------------------------------------------

def test_cai_stream_is_used_when_none_is_given(driver_calls):
    view, stream = device_view(FakeCAIWithDevice(device=1, stream=4242), None)
    assert (stream, view.device, view.address) == (4242, 1, ADDRESS)
    assert driver_calls == []  # same stream: nothing to wait for; __dlpack_device__ named the device


def test_explicit_stream_waits_for_a_different_cai_stream(driver_calls):
    view, stream = device_view(FakeCAIWithDevice(device=1, stream=4242), Stream(99))
    assert stream == 99 and driver_calls == [("wait", 1, 99, 4242)]
    driver_calls.clear()
    device_view(FakeCAIWithDevice(device=1, stream=99), 99)
    device_view(FakeCAIWithDevice(device=1, version=2), 99)  # v2: no producer stream
    assert driver_calls == []


def test_cai_without_dlpack_device_asks_the_driver(driver_calls):
    view, stream = device_view(FakeCAI(stream=1), None)
    assert (view.device, stream) == (0, 1) and driver_calls == [("device", ADDRESS)]


def test_empty_cai_without_memory_has_no_device(driver_calls):
    view, stream = device_view(FakeCAI(shape=(0,), address=0), 5)
    assert view.device == -1 and driver_calls == []


def test_no_stream_anywhere_is_an_error_not_the_legacy_default():
    message = (r"keys are a CUDA array of type test_device_arrays.FakeCAIWithDevice and its "
               r"__cuda_array_interface__ has no stream field, .*pass stream=.*never picks the legacy default")
    with pytest.raises(hps.InvalidArgumentError, match=message):
        device_view(FakeCAIWithDevice(version=2), None)
    with pytest.raises(hps.InvalidArgumentError, match="DLPack carries no stream"):
        device_view(FakeDLPack(), None)


def test_dlpack_gets_the_lookup_stream_and_zero_becomes_the_legacy_default():
    array = FakeDLPack(shape=(2, 2), device=(2, 0))
    view, stream = device_view(array, 77)
    assert (stream, array.streams, view.shape, view.device) == (77, [77], (2, 2), 0)
    view, stream = device_view(array, 0)
    assert stream == 0 and array.streams[-1] == 1  # DLPack disallows 0; 1 is the same (legacy default) stream


def test_dlpack_producers_before_1_0_are_asked_without_max_version():
    array = FakeDLPack(versioned_producer=False)
    assert device_view(array, Stream(3))[1] == 3 and array.streams == [3]


def test_dlpack_host_arrays_take_the_host_path():
    assert device_view(np.arange(3), None) is None
    assert device_view(object(), None) is None


@pytest.mark.parametrize("device, name", [((10, 0), "kDLROCM"), ((3, 0), "kDLCUDAHost"), ((99, 0), "device type 99")])
def test_other_devices_are_named(device, name):
    with pytest.raises(hps.InvalidArgumentError, match=f"keys are in {name} memory; hps takes host arrays and CUDA"):
        device_view(FakeDLPack(device=device), 5)


def test_capsule_on_another_device_than_announced():
    array = FakeDLPack(device=(2, 0))
    array.__dlpack_device__ = lambda: (2, 1)
    with pytest.raises(hps.InvalidArgumentError, match=r"says \(kDLCUDA, 1\) but the capsule holds \(kDLCUDA, 0\)"):
        device_view(array, 5)


# ---- keys and rows through the generic adapter -------------------------------------------------------

def test_device_keys_of_every_key_dtype(driver_calls):
    for typestr, code in [("<i4", 0), ("<i8", 1), ("<u4", 2), ("<u8", 3)]:
        on = CUDA_ARRAY_PROTOCOLS.device_keys(FakeCAIWithDevice(device=0, typestr=typestr, shape=(2, 5), stream=9), None)
        assert (on.code, on.size, on.shape, on.device, on.stream, on.address) == (code, 10, (2, 5), 0, 9, ADDRESS)


@pytest.mark.parametrize("typestr", ["<i2", "<f4", "|b1"])
def test_device_keys_of_other_dtypes_are_refused(typestr):
    with pytest.raises(hps.KeyTypeError, match="device keys must be int32, int64, uint32 or uint64, got"):
        CUDA_ARRAY_PROTOCOLS.device_keys(FakeCAIWithDevice(typestr=typestr, stream=9), None)


def keys_on(device=0, shape=(4,), stream=9):
    return DeviceKeys(ADDRESS, 1, int(np.prod(shape)), shape, device, stream, None)


def test_out_is_required_for_arrays_without_an_adapter():
    with pytest.raises(hps.InvalidArgumentError, match=r"out is required for keys of type test_device_arrays.FakeCAI.*"
                                                       r"float32 CUDA array of shape \(4, 8\) on device 0"):
        CUDA_ARRAY_PROTOCOLS.empty_rows(FakeCAI(), (4, 8), keys_on())


def test_out_is_checked(driver_calls):
    good = FakeCAIWithDevice(device=0, shape=(4, 8), typestr="<f4", stream=9)
    assert CUDA_ARRAY_PROTOCOLS.rows_address(good, (4, 8), keys_on()) == ADDRESS
    cases = [
        (FakeCAIWithDevice(device=0, shape=(4, 7), typestr="<f4"), r"of shape \(4, 8\); found shape \(4, 7\)"),
        (FakeCAIWithDevice(device=0, shape=(4, 8), typestr="<f8"), "found dtype float64"),
        (FakeCAIWithDevice(device=0, shape=(4, 8), typestr="<f4", data=(ADDRESS, True)), "found read-only memory"),
        (FakeCAIWithDevice(device=1, shape=(4, 8), typestr="<f4"), "out must be on CUDA device 0 like the keys, "
                                                                  "found device 1"),
        (np.zeros((4, 8), np.float32), "out must be a CUDA array on device 0 like the keys, found numpy.ndarray"),
        (FakeCAIWithDevice(device=0, shape=(8, 4), typestr="<f4", strides=(4, 32)), "out must be C-contiguous"),
    ]
    for out, message in cases:
        with pytest.raises(hps.InvalidArgumentError, match=message):
            CUDA_ARRAY_PROTOCOLS.rows_address(out, (4, 8), keys_on())


def test_out_with_its_own_stream_is_waited_for(driver_calls):
    out = FakeCAIWithDevice(device=0, shape=(4, 8), typestr="<f4", stream=31)
    CUDA_ARRAY_PROTOCOLS.rows_address(out, (4, 8), keys_on(stream=9))
    assert driver_calls == [("wait", 0, 9, 31)]


# ---- through hps.HPS, stopping before the core ------------------------------------------------------

def test_generic_device_keys_of_a_model_without_gpu_cache(table, driver_calls):
    with hps.HPS(config_for([table], gpucache=False)) as ps:
        with pytest.raises(hps.BackendUnavailableError, match="has no GPU cache here.*keys of type "
                                                              "test_device_arrays.FakeCAIWithDevice"):
            ps.lookup("m", 0, FakeCAIWithDevice(device=0, stream=9))
        with pytest.raises(hps.InvalidArgumentError, match=r"keys are on CUDA device 2, which is not in model 'm''s "
                                                           r"deployed_device_list \[0\]"):
            ps.lookup("m", 0, FakeCAIWithDevice(device=2, stream=9))
        with pytest.raises(hps.InvalidArgumentError, match="hps cannot tell which stream"):
            ps.lookup("m", 0, FakeCAIWithDevice(device=0, version=2))
        with pytest.raises(hps.InvalidArgumentError, match="stream must name a CUDA stream"):
            ps.lookup("m", 0, FakeCAIWithDevice(device=0), stream="default")
        with pytest.raises(hps.KeyTypeError, match="got float32"):
            ps.lookup("m", 0, FakeCAIWithDevice(device=0, typestr="<f4", stream=9))


def test_lookup_many_refuses_host_and_device_arrays_together(table, driver_calls):
    with hps.HPS(config_for([table, table])) as ps:
        with pytest.raises(hps.InvalidArgumentError, match="all in host memory or all on one CUDA device"):
            ps.lookup_many("m", [0, 1], [np.arange(3), FakeCAIWithDevice(device=0, stream=9)])
        with pytest.raises(hps.InvalidArgumentError, match="found ndarray among device arrays"):
            ps.lookup_many("m", [0, 1], [FakeCAIWithDevice(device=0, stream=9), np.arange(3)])
        with pytest.raises(hps.InvalidArgumentError, match=r"same CUDA device, found devices \[0, 1\]"):
            ps.lookup_many("m", [0, 1], [FakeCAIWithDevice(device=0, stream=9), FakeCAIWithDevice(device=1, stream=9)])


def test_empty_generic_keys_without_memory_need_no_device(table, driver_calls):
    out = FakeCAI(shape=(0, 8), typestr="<f4", address=0, stream=9)
    with hps.HPS(config_for([table])) as ps:
        assert ps.lookup("m", 0, FakeCAI(shape=(0,), address=0), out=out, stream=9) is out


# ---- the registry ---------------------------------------------------------------------------------

def test_registry_resolution():
    assert adapter_for(np.arange(3)) is None  # host
    assert adapter_for([1, 2]) is None
    assert adapter_for(FakeCAI()) is CUDA_ARRAY_PROTOCOLS
    assert adapter_for(FakeDLPack()) is CUDA_ARRAY_PROTOCOLS


def test_a_registered_adapter_serves_its_type_and_subclasses(table):
    class Mine:
        pass

    class MineToo(Mine):
        pass

    class MyAdapter(ArrayAdapter):
        array_types = (Mine,)

        def device_keys(self, keys, stream):
            return None  # "host memory": hps reads it with np.asarray

    adapter = MyAdapter()
    assert adapter_for(MineToo()) is None
    array_adapters.register_array_adapter(adapter)
    assert adapter_for(Mine()) is adapter and adapter_for(MineToo()) is adapter
    with pytest.raises(hps.InvalidArgumentError, match="array_types names no type"):
        array_adapters.register_array_adapter(ArrayAdapter())


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_hps_imports_no_framework():
    assert run_python("import sys, hps; hps.HPS; print(sorted(m for m in ('torch', 'cupy') if m in sys.modules))") == "[]"


def test_torch_tensors_find_their_adapter_without_import_hps_torch():
    pytest.importorskip("torch")
    code = ("import sys, torch, hps; from hps.array_adapters import adapter_for; assert 'hps.torch' not in sys.modules; "
            "a = adapter_for(torch.zeros(1)); print(type(a).__module__, type(a).__name__)")
    assert run_python(code) == "hps.torch._arrays TorchArrays"


def test_python_hps_never_names_a_framework_in_code():
    import ast
    import pathlib

    for path in pathlib.Path(hps.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ("torch", "cupy"):
                names = [node.value]
            assert not [n for n in names if n.split(".")[0] in ("torch", "cupy")], f"{path.name}: {names}"


def test_threads_meeting_a_new_array_type_together_all_get_its_adapter(monkeypatch):
    """Found by benchmarks/soak.py on the GPU machine: while one thread loaded torch's adapter, the
    others took torch tensors through the generic protocols (and cached that for the type), whose
    interface carries no stream, so their first lookups failed."""
    import threading
    import time

    class SlowArray:  # a library's array type, met for the first time by several threads at once
        __module__ = "slowarraylib"
        __cuda_array_interface__ = cai()

    class SlowAdapter(ArrayAdapter):
        array_types = (SlowArray,)

    monkeypatch.setattr(array_adapters, "_registered", dict(array_adapters._registered))
    monkeypatch.setattr(array_adapters, "_by_type", dict(array_adapters._by_type))
    monkeypatch.setattr(array_adapters, "_tried_entry_points", set(array_adapters._tried_entry_points))
    adapter = SlowAdapter()

    def load_slowly(module):  # what importing the library's adapter module does, slowly
        assert module == "slowarraylib"
        time.sleep(0.3)
        array_adapters.register_array_adapter(adapter)

    monkeypatch.setattr(array_adapters, "_load_entry_point", load_slowly)
    start = threading.Barrier(8)
    got = []

    def meet():
        start.wait()
        got.append(adapter_for(SlowArray()))

    threads = [threading.Thread(target=meet) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(a is adapter for a in got), [type(a).__name__ for a in got]
    assert adapter_for(SlowArray()) is adapter

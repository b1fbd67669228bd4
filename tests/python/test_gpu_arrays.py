"""Device arrays of any library, with an explicit stream, on a GPU: rows equal the host lookup bit for bit
(marker: gpu). Raw `__cuda_array_interface__` objects and DLPack-only objects wrap torch memory, so
the test needs only torch; CuPy cases skip without CuPy. The parsing is tested without a GPU in
test_device_arrays.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import hps
from conftest import config_for, make_table, mixed_queries

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() and hps.cuda_device_count() > 0),
                       reason="needs a CUDA device and a CUDA build of hps"),
]


class RawCAI:
    """Only __cuda_array_interface__ (v3, with a stream field if given) over a tensor's memory."""

    def __init__(self, tensor, stream=None, version=3):
        self.tensor = tensor  # keeps the memory alive
        iface = dict(tensor.__cuda_array_interface__)
        iface["version"] = version
        iface.pop("stream", None)
        if stream is not None:
            iface["stream"] = stream
        self.__cuda_array_interface__ = iface


class DLPackOnly:
    """Only __dlpack__ / __dlpack_device__ over a tensor (torch orders its current stream before `stream`)."""

    def __init__(self, tensor):
        self.tensor = tensor
        self.streams = []

    def __dlpack_device__(self):
        return self.tensor.__dlpack_device__()

    def __dlpack__(self, stream=None, **kwargs):
        self.streams.append(stream)
        return self.tensor.__dlpack__(stream=stream, **kwargs)


class StreamObject:
    """The CUDA stream protocol (__cuda_stream__) over a torch stream."""

    def __init__(self, stream):
        self.stream = stream

    def __cuda_stream__(self):
        return (0, self.stream.cuda_stream)


@pytest.fixture
def pair(tmp_path):
    table = make_table(tmp_path / "t", 20000, 16, default=-2.0)
    with hps.HPS(config_for([table], gpucacheper=0.3)) as gpu, hps.HPS(config_for([table], gpucache=False)) as cpu:
        yield gpu, cpu, table


def expected(cpu, keys_np):
    return cpu.lookup("m", 0, keys_np)


@pytest.mark.parametrize("key_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("stream_form", ["int", "protocol"])
def test_raw_cai_keys_and_out_with_an_explicit_stream(pair, key_dtype, stream_form):
    gpu, cpu, table = pair
    keys_np = mixed_queries(table, (64, 33))
    if key_dtype == torch.int32:
        keys_np = (keys_np % 2**31).astype(np.int32)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        keys = torch.from_numpy(keys_np).cuda()
        out = torch.full(keys_np.shape + (16,), float("nan"), device="cuda")
    side.synchronize()
    stream = side.cuda_stream if stream_form == "int" else StreamObject(side)
    for _ in range(3):  # cold, then warm cache
        rows = gpu.lookup("m", 0, RawCAI(keys), out=RawCAI(out), stream=stream)
        assert isinstance(rows, RawCAI) and rows.tensor is out
        side.synchronize()
        np.testing.assert_array_equal(out.cpu().numpy(), expected(cpu, keys_np))


def test_raw_cai_stream_field_is_the_default_stream_and_is_waited_for(pair):
    gpu, cpu, table = pair
    keys_np = mixed_queries(table, (50000,))
    producer, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    out = torch.empty((50000, 16), device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(producer):
        torch.cuda._sleep(50_000_000)  # the keys are written late on the producer's stream
        keys = torch.from_numpy(keys_np).pin_memory().cuda(non_blocking=True)
    # No stream given: the lookup runs on the interface's stream, after the copy.
    gpu.lookup("m", 0, RawCAI(keys, stream=producer.cuda_stream), out=RawCAI(out, stream=producer.cuda_stream))
    producer.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), expected(cpu, keys_np))
    # Another stream given: it waits (on the device) for the producer's stream first.
    keys_np2 = mixed_queries(table, (50000,), seed=7)
    with torch.cuda.stream(producer):
        torch.cuda._sleep(50_000_000)
        keys.copy_(torch.from_numpy(keys_np2).pin_memory(), non_blocking=True)
    gpu.lookup("m", 0, RawCAI(keys, stream=producer.cuda_stream), out=RawCAI(out), stream=consumer.cuda_stream)
    consumer.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), expected(cpu, keys_np2))


def test_raw_cai_device_comes_from_the_driver(pair):
    gpu, cpu, table = pair
    keys_np = mixed_queries(table, (1000,))
    keys, out = torch.from_numpy(keys_np).cuda(), torch.empty((1000, 16), device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    gpu.lookup("m", 0, RawCAI(keys, version=2), out=RawCAI(out, version=2), stream=stream)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), expected(cpu, keys_np))


def test_dlpack_keys_and_out(pair):
    gpu, cpu, table = pair
    keys_np = mixed_queries(table, (4096,))
    side = torch.cuda.Stream()
    keys_wrapped = DLPackOnly(torch.from_numpy(keys_np).cuda())
    out = torch.empty((4096, 16), device="cuda")
    rows = gpu.lookup("m", 0, keys_wrapped, out=DLPackOnly(out), stream=side.cuda_stream)
    assert keys_wrapped.streams == [side.cuda_stream] and rows.tensor is out
    side.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), expected(cpu, keys_np))


def test_generic_arrays_refuse_what_they_cannot_do(pair):
    gpu, cpu, table = pair
    keys = torch.from_numpy(table.keys[:10]).cuda()
    with pytest.raises(hps.InvalidArgumentError, match="hps cannot tell which stream"):
        gpu.lookup("m", 0, RawCAI(keys), out=RawCAI(torch.empty((10, 16), device="cuda")))
    with pytest.raises(hps.InvalidArgumentError, match="DLPack carries no stream"):
        gpu.lookup("m", 0, DLPackOnly(keys))
    with pytest.raises(hps.InvalidArgumentError, match="out is required"):
        gpu.lookup("m", 0, RawCAI(keys), stream=torch.cuda.current_stream().cuda_stream)
    with pytest.raises(hps.InvalidArgumentError, match=r"found shape \(10, 15\)"):
        gpu.lookup("m", 0, RawCAI(keys), out=RawCAI(torch.empty((10, 15), device="cuda")), stream=1)
    with pytest.raises(hps.InvalidArgumentError, match="C-contiguous"):
        gpu.lookup("m", 0, RawCAI(keys.view(5, 2).t()), stream=1)
    with pytest.raises(hps.BackendUnavailableError, match="no GPU cache here"):
        cpu.lookup("m", 0, RawCAI(keys), out=RawCAI(torch.empty((10, 16), device="cuda")), stream=1)


def test_lookup_many_of_raw_cai_arrays(tmp_path):
    tables = [make_table(tmp_path / f"t{i}", 5000, 8, seed=i, default=float(i)) for i in range(4)]
    with hps.HPS(config_for(tables, gpucacheper=0.5)) as gpu, hps.HPS(config_for(tables, gpucache=False)) as cpu:
        keys_np = [mixed_queries(t, (3000,), seed=i) for i, t in enumerate(tables)]
        keys = [torch.from_numpy(k).cuda() for k in keys_np]
        out = torch.empty((4, 3000, 8), device="cuda")
        side = torch.cuda.Stream()
        torch.cuda.synchronize()
        gpu.lookup_many("m", [0, 1, 2, 3], [RawCAI(k) for k in keys], out=[RawCAI(o) for o in out.unbind(0)],
                        stream=StreamObject(side))
        side.synchronize()
        for i in range(4):
            np.testing.assert_array_equal(out[i].cpu().numpy(), cpu.lookup("m", i, keys_np[i]))


def test_torch_tensors_with_an_explicit_stream(pair):
    gpu, cpu, table = pair
    keys_np = mixed_queries(table, (777,))
    side = torch.cuda.Stream()
    keys = torch.from_numpy(keys_np).cuda()
    torch.cuda.synchronize()
    for stream in (side.cuda_stream, StreamObject(side)):
        rows = gpu.lookup("m", 0, keys, stream=stream)
        side.synchronize()
        np.testing.assert_array_equal(rows.cpu().numpy(), expected(cpu, keys_np))
    with pytest.raises(hps.InvalidArgumentError, match=r"out must be a contiguous float32 tensor of shape \(777, 16\); "
                                                       r"found torch.float64"):
        gpu.lookup("m", 0, keys, out=torch.empty((777, 16), dtype=torch.float64, device="cuda"))


def test_cupy_arrays_with_streams(pair):
    cupy = pytest.importorskip("cupy")
    gpu, cpu, table = pair
    keys_np = mixed_queries(table, (2048,))
    with cupy.cuda.Stream(non_blocking=True) as producer:
        keys = cupy.asarray(keys_np)
        rows = gpu.lookup("m", 0, keys)  # CuPy's current stream, from the interface's stream field
        assert isinstance(rows, cupy.ndarray)
        producer.synchronize()
        np.testing.assert_array_equal(cupy.asnumpy(rows), expected(cpu, keys_np))
    consumer = cupy.cuda.Stream(non_blocking=True)
    with producer:  # CuPy's interface names its current stream: the consumer stream waits for it
        keys = cupy.asarray(keys_np[::-1].copy())
        rows = gpu.lookup("m", 0, keys, stream=consumer.ptr)
    consumer.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(rows), expected(cpu, keys_np[::-1]))
    with pytest.raises(hps.KeyTypeError, match="got float32"):
        gpu.lookup("m", 0, cupy.zeros(3, dtype=cupy.float32))


def test_driver_answers_devices_and_orders_streams():
    from hps._cuda_driver import pointer_device, stream_wait

    assert pointer_device(torch.arange(10, device="cuda").data_ptr()) == 0
    producer, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    for trial in range(3):
        src = torch.zeros(1 << 20, device="cuda")
        dst = torch.empty_like(src)
        torch.cuda.synchronize()
        with torch.cuda.stream(producer):
            torch.cuda._sleep(100_000_000)  # the producer writes late
            src.fill_(trial + 1)
        stream_wait(0, consumer.cuda_stream, producer.cuda_stream)
        with torch.cuda.stream(consumer):
            dst.copy_(src)
        consumer.synchronize()
        assert bool((dst == trial + 1).all()), "the consumer stream did not wait for the producer's"
        torch.cuda.synchronize()
    stream_wait(0, consumer.cuda_stream, 1)  # the legacy and per-thread default streams are streams too
    stream_wait(0, 2, consumer.cuda_stream)
    torch.cuda.synchronize()

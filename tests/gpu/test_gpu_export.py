"""synarrow.gpu without a GPU: clear errors, and the Arrow C Device export tested on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from synarrow import DbConfig, GPUUnavailableError, SynaDB, device, gpu
from synarrow.errors import InvalidArgumentError, TypeMismatchError
from synarrow.tensor import TensorEngine

no_gpu = pytest.mark.skipif(gpu.is_available(), reason="a GPU is present")


def import_device(obj: Any) -> pa.Array:
    schema, array = obj.__arrow_c_device_array__()
    return pa.Array._import_from_c_device_capsule(schema, array)


@no_gpu
def test_every_gpu_call_raises_a_clear_error(tmp_path: Path) -> None:
    assert gpu.available_backends() == []
    with pytest.raises(GPUUnavailableError, match="CUDA"):
        gpu.to_device(np.ones(3))
    with pytest.raises(GPUUnavailableError):
        gpu.to_device(np.ones(3), "cuda:0", backend="torch")
    with SynaDB(tmp_path / "g.db", DbConfig(sync_on_write=False)) as db:
        db.append_batch("k", np.ones(10))
        with pytest.raises(GPUUnavailableError):
            gpu.history_to_device(db, "k")
        TensorEngine(db).put_tensor("t/", np.ones((2, 2)))
        with pytest.raises(GPUUnavailableError):
            gpu.tensor_to_device(db, "t/*", "cuda")
        # and the rest of the library keeps working
        assert db.get_history_floats("k").sum() == 10.0


def test_parse_device() -> None:
    assert str(gpu.parse_device("cuda")) == "cuda:0"
    assert str(gpu.parse_device("cuda:3")) == "cuda:3"
    assert str(gpu.parse_device(1)) == "cuda:1"
    assert str(gpu.parse_device("cpu")) == "cpu"
    for bad in ("tpu", "cuda:x", "cpu:1"):
        with pytest.raises(InvalidArgumentError):
            gpu.parse_device(bad)
    with pytest.raises(InvalidArgumentError):
        gpu.to_device(np.ones(2), "cuda", backend="opencl")


@pytest.mark.parametrize(
    ("shape", "dtype", "arrow_type"),
    [
        ((7,), "float64", pa.float64()),
        ((4, 3), "float32", pa.list_(pa.float32(), 3)),
        ((2, 3, 4), "int16", pa.fixed_shape_tensor(pa.int16(), [3, 4])),
        ((5,), "uint64", pa.uint64()),
        ((3, 2), "float16", pa.list_(pa.float16(), 2)),
        ((0, 2), "int32", pa.list_(pa.int32(), 2)),
    ],
)
def test_c_device_export_round_trips_on_cpu(shape: Any, dtype: str, arrow_type: Any) -> None:
    x = (np.arange(int(np.prod(shape))) % 50).astype(dtype).reshape(shape)
    arr = gpu.to_device(x, "cpu")
    assert arr.device == "cpu" and arr.shape == shape and arr.nbytes == x.nbytes
    _, capsule = arr.__arrow_c_device_array__()
    assert gpu.device_fields(capsule)[0] == gpu.ARROW_DEVICE_CPU
    got = import_device(arr)
    assert got.type == arrow_type and len(got) == shape[0]
    if len(shape) == 1:
        back = got.to_numpy()
    elif len(shape) == 2:
        back = got.flatten().to_numpy().reshape(shape)
    else:
        back = got.to_numpy_ndarray()
    assert np.array_equal(back, x)
    if x.size:  # the export shares the host memory, no copy
        assert np.shares_memory(back, x) or back.ctypes.data == x.ctypes.data
    assert pa.array(arr).equals(got)


def test_export_shares_a_mapped_history(tmp_path: Path) -> None:
    with SynaDB(tmp_path / "h.db", DbConfig(sync_on_write=False)) as db:
        values = np.random.default_rng(0).standard_normal(10_000)
        db.append_batch("x", values)
        db.compact()
        arr = gpu.history_to_device(db, "x", "cpu")
        view = db.get_history_floats("x")
        assert arr.ptr == view.__array_interface__["data"][0]
        got = import_device(arr)
        assert np.array_equal(got.to_numpy(), values)


def test_history_of_vectors_and_chunked_columns(tmp_path: Path) -> None:
    with SynaDB(tmp_path / "v.db", DbConfig(sync_on_write=False)) as db:
        a = np.ones((3, 4), dtype=np.float32)
        db.append_batch("v", a)
        db.append_batch("v", a * 2)  # two chunks in the log tail
        arr = gpu.history_to_device(db, "v", "cpu")
        assert arr.shape == (6, 4) and arr.dtype == "float32"
        assert np.array_equal(arr.to_numpy()[3:], a * 2)
        db.append("text", "x")
        with pytest.raises(TypeMismatchError):
            gpu.history_to_device(db, "text", "cpu")


def test_relabelled_device_fields() -> None:
    """The torch / CuPy export path writes CUDA into the exported struct; check the fields."""
    arr = gpu.to_device(np.arange(4, dtype=np.float32), "cpu")
    _, capsule = arr._arrow_array().__arrow_c_device_array__()
    gpu.set_device(capsule, gpu.ARROW_DEVICE_CUDA, 3)
    assert gpu.device_fields(capsule) == (gpu.ARROW_DEVICE_CUDA, 3, 0)


def test_unsupported_export_dtypes() -> None:
    for x in (np.array([True, False]), np.array([1 + 1j])):
        with pytest.raises(TypeMismatchError):
            gpu.to_device(x, "cpu").__arrow_c_device_array__()
    with pytest.raises(TypeMismatchError):
        gpu.to_device(np.array(["a"]), "cpu")


def test_cpu_device_array_to_torch_and_dlpack(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    arr = gpu.to_device(x, "cpu")
    t = arr.torch()
    assert t.data_ptr() == x.ctypes.data and torch.equal(t, torch.from_numpy(x))
    assert arr.__dlpack_device__() == (1, 0)
    assert torch.equal(torch.from_dlpack(arr), t)
    assert not hasattr(arr, "__cuda_array_interface__")
    bf = gpu.to_device(torch.ones(3, dtype=torch.bfloat16), "cpu")
    assert bf.dtype == "bfloat16" and bf.torch().dtype == torch.bfloat16
    with TensorEngine(tmp_path / "t.db") as engine:
        engine.put_tensor("t/", x)
        got = gpu.tensor_to_device(engine, "t/*", "cpu")
        assert np.array_equal(got.to_numpy(), x)
    with pytest.raises(InvalidArgumentError):
        arr.cupy()


def test_import_synarrow_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, synarrow; synarrow.gpu; synarrow.TensorEngine; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _FakeStream:
    def wait_stream(self, other: object) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _FakeEvent:
    def record(self, stream: object) -> None:
        pass

    def synchronize(self) -> None:
        pass


def test_staging_ring_offsets_with_cpu_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ring's chunking over several segments, with CPU tensors standing in for CUDA."""
    import contextlib
    import threading
    from types import SimpleNamespace

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(device, "STAGING_BYTES", 8)
    fake_cuda = SimpleNamespace(
        current_stream=lambda device: _FakeStream(),
        stream=lambda s: contextlib.nullcontext(),
        Event=_FakeEvent,
    )
    ring = device._TorchRing.__new__(device._TorchRing)
    ring.torch = SimpleNamespace(cuda=fake_cuda)
    ring.device = "cpu"
    ring.lock = threading.Lock()
    ring.buffers = [torch.empty(8, dtype=torch.uint8) for _ in range(2)]
    ring.streams = [_FakeStream(), _FakeStream()]
    ring.events = [None, None]
    rng = np.random.default_rng(0)
    segments = [rng.integers(0, 255, n, dtype=np.uint8) for n in (0, 5, 8, 17, 1, 30)]
    for seg in segments:
        seg.flags.writeable = False  # like views of the mapped files
    dst = torch.zeros(sum(len(s) for s in segments), dtype=torch.uint8)
    ring.copy(segments, dst)
    assert np.array_equal(dst.numpy(), np.concatenate(segments))

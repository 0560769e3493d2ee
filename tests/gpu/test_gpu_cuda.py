"""GPU tests: run on a machine with CUDA (``pytest -m gpu``); skipped cleanly elsewhere.

``scripts/gpu_check.py`` runs them together with the host-to-device benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synarrow import DbConfig, SynaDB, gpu
from synarrow.tensor import TensorEngine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu.is_available(), reason="needs a CUDA device"),
]


def torch_or_skip() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    return torch


@pytest.fixture
def compacted(tmp_path: Path) -> Any:
    db = SynaDB(tmp_path / "g.db", DbConfig(sync_on_write=False, auto_compact=False))
    values = np.random.default_rng(0).standard_normal(20_000_000)  # 160 MB: 5 staging chunks
    db.append_batch("x", values)
    db.compact()
    yield db, values
    db.close()


def test_history_to_device_through_the_staging_ring(compacted: Any) -> None:
    torch = torch_or_skip()
    db, values = compacted
    arr = gpu.history_to_device(db, "x", "cuda", backend="torch")
    assert arr.device == "cuda:0" and arr.backend == "torch"
    t = arr.torch()
    assert t.is_cuda and t.dtype == torch.float64 and t.shape == values.shape
    assert torch.equal(t.cpu(), torch.from_numpy(values))


def test_odd_sizes_and_small_arrays() -> None:
    torch = torch_or_skip()
    for n in (0, 1, 7, 300_001, 8_388_609):  # around the small-copy and chunk boundaries
        x = np.random.default_rng(n).random(n).astype(np.float32)
        t = gpu.to_device(x, "cuda", backend="torch").torch()
        assert torch.equal(t.cpu(), torch.from_numpy(x))


def test_c_device_export_names_cuda_and_the_device_pointer() -> None:
    torch = torch_or_skip()
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    arr = gpu.to_device(x, "cuda", backend="torch")
    schema, capsule = arr.__arrow_c_device_array__()
    device_type, device_id, sync_event = gpu.device_fields(capsule)
    assert device_type == gpu.ARROW_DEVICE_CUDA and device_id == 0 and sync_event == 0
    cai = arr.__cuda_array_interface__
    assert cai["data"][0] == arr.torch().data_ptr() and cai["shape"] == (4, 3)
    assert torch.equal(torch.as_tensor(arr, device="cuda").cpu(), torch.from_numpy(x))
    del schema, capsule


def test_tensor_engine_to_cuda(tmp_path: Path) -> None:
    torch = torch_or_skip()
    with TensorEngine(tmp_path / "t.db") as engine:
        x = torch.randn(1000, 64)
        engine.put_tensor("x/", x)
        engine.put_tensor("b/", x.to(torch.bfloat16))
        engine.db.compact()
        t = engine.get_tensor_torch("x/*", device="cuda")
        assert t.is_cuda and torch.equal(t.cpu(), x)
        b = gpu.tensor_to_device(engine, "b/*", "cuda").torch()
        assert b.dtype == torch.bfloat16 and torch.equal(b.cpu(), x.to(torch.bfloat16))


def test_cupy_backend_when_installed() -> None:
    cp = pytest.importorskip("cupy")
    x = np.random.default_rng(1).random(5_000_000)
    arr = gpu.to_device(x, "cuda", backend="cupy")
    assert np.array_equal(cp.asnumpy(arr.cupy()), x)


def test_arrow_backend_when_pyarrow_has_cuda() -> None:
    pytest.importorskip("pyarrow.cuda")
    x = np.arange(1000, dtype=np.int64)
    arr = gpu.to_device(x, "cuda", backend="arrow")
    assert np.array_equal(arr.to_numpy(), x)
    _, capsule = arr.__arrow_c_device_array__()
    assert gpu.device_fields(capsule)[0] == gpu.ARROW_DEVICE_CUDA

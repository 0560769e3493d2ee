"""PyTorch datasets: windows, keys, DataLoader worker processes (fork safety)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from synarrow import DbConfig, SynaDB  # noqa: E402
from synarrow.errors import InvalidArgumentError  # noqa: E402
from synarrow.tensor import TensorEngine  # noqa: E402
from synarrow.torch_data import KeyDataset, WindowDataset, batch_loader  # noqa: E402


def expected_windows(series: np.ndarray, window: int, stride: int, horizon: int) -> list:
    out = []
    s = 0
    while s + window + horizon <= len(series):
        out.append((series[s : s + window], series[s + window : s + window + horizon]))
        s += stride
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    window=st.integers(1, 8),
    stride=st.integers(1, 5),
    horizon=st.integers(0, 4),
)
def test_window_arithmetic(n: int, window: int, stride: int, horizon: int) -> None:
    series = np.arange(n, dtype=np.float64)
    ds = WindowDataset.from_array(series, window=window, stride=stride, horizon=horizon)
    want = expected_windows(series, window, stride, horizon)
    assert len(ds) == len(want)
    for i, (x, y) in enumerate(want):
        got = ds[i]
        gx, gy = got if horizon else (got, None)
        assert np.array_equal(gx.numpy(), x)
        if horizon:
            assert np.array_equal(gy.numpy(), y)
    if want:
        batch = ds[list(range(len(want)))]
        bx = batch[0] if horizon else batch
        assert np.array_equal(bx.numpy(), np.stack([x for x, _ in want]))
        assert np.array_equal(ds[-1][0] if horizon else ds[-1], bx[-1])
    with pytest.raises(IndexError):
        ds[len(want)]


@pytest.fixture
def series_db(tmp_path: Path) -> Any:
    path = tmp_path / "s.db"
    db = SynaDB(path, DbConfig(sync_on_write=False, auto_compact=False))
    series = np.random.default_rng(0).standard_normal(5000)
    db.append_batch("temperature", series)
    vectors = np.random.default_rng(1).random((300, 3)).astype(np.float32)
    db.append_batch("imu", vectors)
    db.compact()
    yield db, series, vectors
    db.close()


def collect(loader: Any) -> tuple[Any, Any]:
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def test_dataloader_two_workers_over_windows(series_db: Any) -> None:
    db, series, _ = series_db
    ds = WindowDataset(db, "temperature", window=32, stride=4, horizon=8)
    ref = WindowDataset.from_array(series, window=32, stride=4, horizon=8)
    x, y = collect(DataLoader(ds, batch_size=128, num_workers=2))
    assert len(x) == len(ds) == len(ref)
    assert torch.equal(x, ref[list(range(len(ref)))][0])
    assert torch.equal(y, ref[list(range(len(ref)))][1])
    x2, y2 = collect(batch_loader(ds, 128, num_workers=2))
    assert torch.equal(x2, x) and torch.equal(y2, y)


def test_dataloader_shuffled_batches_cover_every_window(series_db: Any) -> None:
    db, series, _ = series_db
    ds = WindowDataset(db, "temperature", window=16, stride=16)
    seen = torch.cat(list(batch_loader(ds, 50, shuffle=True, num_workers=2)))
    want = series[: len(ds) * 16].reshape(-1, 16)
    got = seen.numpy()[np.argsort(seen[:, 0].numpy())]
    assert np.array_equal(got, want[np.argsort(want[:, 0])])


def test_vector_series_gives_window_by_dim(series_db: Any) -> None:
    db, _, vectors = series_db
    ds = WindowDataset(db, "imu", window=10, horizon=2, dtype=torch.float64)
    x, y = ds[5]
    assert x.shape == (10, 3) and y.shape == (2, 3) and x.dtype == torch.float64
    assert np.allclose(x.numpy(), vectors[5:15])


def test_key_dataset_with_labels_in_workers(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    db = SynaDB(path, DbConfig(sync_on_write=False))
    engine = TensorEngine(db)
    x = np.random.default_rng(3).random((500, 4, 4)).astype(np.float32)
    labels = np.arange(500) % 10
    engine.put_tensor("train/x/", x)
    engine.put_tensor("train/y/", labels)
    # the writer keeps its lock: workers open read-only, without it
    ds = KeyDataset(db, "train/x/*", labels="train/y/*")
    gx, gy = collect(DataLoader(ds, batch_size=64, num_workers=2))
    assert np.array_equal(gx.numpy(), x) and np.array_equal(gy.numpy(), labels)
    db.close()


def test_key_dataset_over_single_keys(tmp_path: Path) -> None:
    db = SynaDB(tmp_path / "k.db", DbConfig(sync_on_write=False))
    for i in range(20):
        db.append(f"sensor/{i:04d}", float(i))
    ds = KeyDataset(db, "sensor/*", dtype="float32", transform=lambda t: t * 2)
    assert len(ds) == 20 and ds[3].item() == 6.0 and ds[3].dtype == torch.float32
    assert ds[[1, 2]].tolist() == [2.0, 4.0]
    db.close()


def test_workers_reopen_the_database(series_db: Any) -> None:
    """Every process opens its own read-only handle; the parent's state is not reused."""
    db, _, _ = series_db
    ds = WindowDataset(db, "temperature", window=8, stride=1000)
    parent_arrays = ds.arrays()

    def pid_and_fresh(i: int) -> Any:
        return os.getpid(), ds.arrays() is not parent_arrays

    class Probe(torch.utils.data.Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> Any:
            return pid_and_fresh(i)

    out = list(DataLoader(Probe(), batch_size=None, num_workers=2))
    assert {pid for pid, _ in out} != {os.getpid()}
    assert all(fresh for _, fresh in out)


def test_pickling_drops_loaded_arrays(series_db: Any) -> None:
    db, _, _ = series_db
    ds = WindowDataset(db, "temperature", window=8)
    ds.arrays()
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays is None and len(clone) == len(ds)
    assert torch.equal(clone[10], ds[10])


def test_window_over_a_stored_tensor(tmp_path: Path) -> None:
    with TensorEngine(tmp_path / "t.db") as engine:
        data = np.arange(40, dtype=np.int32).reshape(20, 2)
        engine.put_tensor("frames/", data)
        ds = WindowDataset(engine.db, pattern="frames/*", window=4, stride=2)
        assert len(ds) == 9 and ds[1].tolist() == data[2:6].tolist()


def test_dataset_argument_errors(series_db: Any) -> None:
    db, _, _ = series_db
    with pytest.raises(InvalidArgumentError):
        WindowDataset(db, window=4)
    with pytest.raises(InvalidArgumentError):
        WindowDataset(db, "temperature", window=0)
    with pytest.raises(InvalidArgumentError):
        db.append("a/0", 1.0)
        db.append("a/1", 2.0)
        db.append("b/0", 1.0)
        KeyDataset(db, "a/*", labels="b/*")  # 2 rows vs 1
    with pytest.raises(InvalidArgumentError):
        KeyDataset(object(), "x/*")
    with pytest.raises(KeyError):
        WindowDataset(db, "nope", window=4)

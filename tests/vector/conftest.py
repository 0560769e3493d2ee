"""Fixtures for the vector store tests: store paths, stores, and clustered test data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synarrow import DbConfig
from synarrow.vector import VectorStore

# fsync per call is tested by the crash tests; elsewhere it only slows the suite down.
FAST = DbConfig(sync_on_write=False, auto_compact=False)


def gaussian_mixture(
    n: int, dims: int, *, seed: int = 0, clusters: int = 50, spread: float = 3.0
) -> np.ndarray:
    """``n`` float32 points of a fixed mixture of ``clusters`` Gaussians (unit variance).

    The centres depend only on ``dims``, ``clusters`` and ``spread``; ``seed`` draws the
    points, so data and queries drawn with different seeds come from the same mixture.
    """
    centres = np.random.default_rng(dims * 7919 + clusters).standard_normal((clusters, dims))
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, dims))
    return (centres[rng.integers(0, clusters, n)] * spread + noise).astype(np.float32)


@pytest.fixture
def mixture() -> Callable[..., np.ndarray]:
    """:func:`gaussian_mixture`, for tests."""
    return gaussian_mixture


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A fresh store path (not created yet)."""
    return tmp_path / "vectors.db"


@pytest.fixture
def open_store(store_path: Path) -> Iterator[Callable[..., VectorStore]]:
    """Open stores on ``store_path`` (fast config unless given); all closed at the end."""
    opened: list[VectorStore] = []

    def factory(*args: Any, **kwargs: Any) -> VectorStore:
        kwargs.setdefault("config", None if kwargs.get("readonly") else FAST)
        store = VectorStore(store_path, *args, **kwargs)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., VectorStore]) -> VectorStore:
    """An empty 8-dimensional cosine store."""
    return open_store(8)

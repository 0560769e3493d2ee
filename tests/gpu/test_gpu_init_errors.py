"""A CUDA library that is installed but fails to initialise is reported, not hidden as "no GPU".

No GPU is needed: the failing initialisation is simulated by making torch's device probe raise
(what a driver/runtime mismatch does), and a broken import by a module that raises on import.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from synarrow import GPUUnavailableError, gpu


def test_failing_torch_cuda_init_is_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    failure = RuntimeError("CUDA driver initialization failed, you might not have a CUDA gpu.")

    def broken() -> bool:
        raise failure

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    assert "torch" not in gpu.available_backends()
    with pytest.raises(GPUUnavailableError) as info:
        gpu.to_device(np.ones(3), "cuda", backend="torch")
    assert info.value.__cause__ is failure
    assert "torch failed to initialise CUDA" in str(info.value)
    assert "CUDA driver initialization failed" in str(info.value)
    if not gpu.is_available():  # "auto" names every backend and keeps the failure as cause
        with pytest.raises(GPUUnavailableError) as auto:
            gpu.to_device(np.ones(3), "cuda")
        assert auto.value.__cause__ is failure
        assert "torch failed" in str(auto.value) and "pyarrow.cuda" in str(auto.value)


def test_broken_cupy_import_is_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    failure = ImportError("libcudart.so.12: cannot open shared object file")

    # An installed but broken package: importing it raises (a meta path finder does that).
    class Finder:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> None:
            if name == "cupy":
                raise failure
            return None

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    with pytest.raises(GPUUnavailableError) as info:
        gpu.to_device(np.ones(3), "cuda", backend="cupy")
    assert info.value.__cause__ is failure
    assert "importing cupy failed" in str(info.value) and "libcudart" in str(info.value)


@pytest.mark.skipif(gpu.is_available(), reason="a GPU is present")
def test_missing_libraries_are_reasons_without_a_cause() -> None:
    with pytest.raises(GPUUnavailableError) as info:
        gpu.to_device(np.ones(3), "cuda", backend="arrow")
    assert "pyarrow.cuda" in str(info.value)
    assert info.value.__cause__ is None  # PyPI pyarrow has no CUDA build: nothing failed


@pytest.mark.skipif(gpu.is_available(), reason="a GPU is present")
def test_torch_tensor_to_cuda_without_a_gpu() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(GPUUnavailableError):
        gpu.to_device(torch.ones(3), "cuda")

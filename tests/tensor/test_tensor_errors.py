"""Every bad input gets a synarrow error that says what was wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    SynaError,
    TypeMismatchError,
)
from synarrow.interop import dtype_name
from synarrow.tensor import TensorEngine


def test_pattern_matching_nothing(engine: TensorEngine) -> None:
    with pytest.raises(KeyNotFoundError, match=r"nothing|no key"):
        engine.get_tensor("missing/*")
    with pytest.raises(KeyNotFoundError):
        list(engine.stream("missing/*"))
    with pytest.raises(KeyNotFoundError):
        engine.info("missing/")
    assert engine.keys("missing/*") == []


def test_rows_of_unequal_shapes(engine: TensorEngine) -> None:
    engine.db.append("v/0", np.ones(3, dtype=np.float32))
    engine.db.append("v/1", np.ones(4, dtype=np.float32))
    with pytest.raises(InvalidValueError, match=r"'v/0'.*'v/1'"):
        engine.get_tensor("v/*")
    engine.put_tensor("t/a", np.ones((2, 5)))
    engine.put_tensor("t/b", np.ones((2, 6)))
    with pytest.raises(InvalidValueError, match="shape"):
        engine.get_tensor("t/*")


@pytest.mark.parametrize("value", ["text", b"bytes", None])
def test_non_numeric_values(engine: TensorEngine, value: object) -> None:
    engine.db.append("n/0", 1.0)
    engine.db.append("n/1", value)
    with pytest.raises(TypeMismatchError, match="'n/1'"):
        engine.get_tensor("n/*")
    with pytest.raises(TypeMismatchError):
        list(engine.stream("n/*"))


@pytest.mark.parametrize(
    "bad", [np.array(["a", "b"]), np.array([object(), 1], dtype=object), [[1, 2], [3]]]
)
def test_put_refuses_non_numeric_or_ragged(engine: TensorEngine, bad: object) -> None:
    with pytest.raises(InvalidValueError):
        engine.put_tensor("bad/", bad)


def test_shape_that_does_not_fit(engine: TensorEngine) -> None:
    engine.put_tensor("s/", np.arange(12.0))
    with pytest.raises(InvalidArgumentError, match=r"does not fit shape \(5, 5\)"):
        engine.get_tensor("s/*", shape=(5, 5))
    with pytest.raises(InvalidArgumentError):
        engine.get_tensor("s/*", shape="abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "dtype", "why"),
    [
        (np.array([1.5, 2.0]), np.int64, "fractional"),
        (np.array([np.nan]), np.int32, "NaN"),
        (np.array([300], dtype=np.int64), np.int8, "range"),
        (np.array([-1], dtype=np.int64), np.uint32, "range"),
        (np.array([3e38], dtype=np.float64), np.float16, "too large"),
        (np.array([1e300]), np.float32, "too large"),
        (np.array([2.0**63]), np.int64, "range"),
        (np.array([1 + 2j]), np.float64, "imaginary"),
        (np.array([2]), np.bool_, "0 and 1"),
    ],
)
def test_dtype_that_cannot_hold_the_values(
    engine: TensorEngine, values: np.ndarray, dtype: Any, why: str
) -> None:
    engine.put_tensor("d/", values)
    with pytest.raises(InvalidValueError, match=why):
        engine.get_tensor("d/*", dtype=dtype)


def test_dtype_conversions_that_fit(engine: TensorEngine) -> None:
    engine.put_tensor("ok/", np.array([1.0, -2.0, 3.0]))
    assert engine.get_tensor("ok/*", dtype=np.int8).tolist() == [1, -2, 3]
    engine.put_tensor("ok/", np.array([2**62], dtype=np.int64))
    assert engine.get_tensor("ok/*", dtype=np.float32)[0] == np.float32(2.0**62)


def test_bad_arguments(engine: TensorEngine) -> None:
    engine.put_tensor("a/", np.ones(4))
    with pytest.raises(InvalidArgumentError):
        list(engine.stream("a/*", batch_size=0))
    with pytest.raises(InvalidArgumentError):
        engine.put_tensor_chunked("a/", np.ones(4), chunk_size=0)
    with pytest.raises(InvalidArgumentError):
        engine.get_tensor("a/*", dtype="str")
    with pytest.raises(InvalidArgumentError):
        engine.get_tensor("")
    with pytest.raises(InvalidArgumentError):
        engine.put_tensor(3, np.ones(2))  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        engine.put_tensor("x" * 70_000, np.ones(2))
    with pytest.raises(InvalidArgumentError):
        dtype_name(np.dtype("datetime64[s]"))


def test_partial_delete_of_a_tensor_is_refused(engine: TensorEngine) -> None:
    engine.put_tensor("p/", np.ones((20, 2)))
    with pytest.raises(InvalidArgumentError, match="deleted whole"):
        engine.delete("p/1*")
    assert engine.get_tensor("p/*").shape == (20, 2)


def test_damaged_description(engine: TensorEngine) -> None:
    engine.put_tensor("c/", np.ones(3))
    engine.db.append("c/#tensor-meta", "{not json")
    with pytest.raises(CorruptionError):
        engine.get_tensor("c/*")


def test_bfloat16_without_ml_dtypes_says_what_to_do(engine: TensorEngine) -> None:
    torch = pytest.importorskip("torch")
    engine.put_tensor("b/", torch.ones(2, dtype=torch.bfloat16))
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        with pytest.raises(TypeMismatchError, match="bfloat16"):
            engine.get_tensor("b/*")
    assert engine.get_tensor("b/*", dtype=np.float32).tolist() == [1.0, 1.0]


def test_errors_are_syna_errors_with_builtin_bases() -> None:
    assert issubclass(KeyNotFoundError, (SynaError, KeyError))
    assert issubclass(InvalidValueError, ValueError)
    assert issubclass(TypeMismatchError, TypeError)


def test_gpu_device_without_cuda(engine: TensorEngine) -> None:
    torch = pytest.importorskip("torch")
    from synarrow import GPUUnavailableError, gpu

    if gpu.is_available() and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    engine.put_tensor("g/", np.ones(3))
    with pytest.raises(GPUUnavailableError):
        engine.get_tensor_torch("g/*", device="cuda")

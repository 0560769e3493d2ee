"""Conversions between synarrow's Arrow data and numpy, torch, pandas and polars: one place.

Input conversion (what ``append`` and ``append_batch`` accept) is :mod:`synarrow.inputs`; this
module is the other direction, plus the dtype table the tensor layer stores by. Nothing here
imports torch, pandas or polars before a function that needs it is called.
"""

from __future__ import annotations

from typing import Any, TypeAlias, Union

import numpy as np
import pyarrow as pa

from synarrow.columnar.schema import numpy_dtype as arrow_numpy_dtype
from synarrow.errors import InvalidArgumentError, InvalidValueError, TypeMismatchError
from synarrow.optional import optional, require

__all__ = [
    "BFLOAT16",
    "NUMPY_DTYPES",
    "SUPPORTED_DTYPES",
    "DTypeLike",
    "arrow_value_type",
    "bf16_to_f32",
    "cast_checked",
    "column_numpy",
    "dtype_name",
    "fixed_size_list_numpy",
    "history_pandas",
    "history_polars",
    "numpy_dtype",
    "storage_dtype",
    "to_torch",
    "torch_view",
]

# -- dtypes ---------------------------------------------------------------------------------

# Stored dtypes: everything numpy stores as plain fixed-size numbers, plus bfloat16 (raw bits).
NUMPY_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
BFLOAT16 = "bfloat16"
SUPPORTED_DTYPES: tuple[str, ...] = (*NUMPY_DTYPES, BFLOAT16)

DTypeLike: TypeAlias = Union[str, np.dtype, type, Any]  # noqa: UP007 (runtime alias)


def dtype_name(dtype: DTypeLike) -> str:
    """Canonical name of a numpy / torch / string dtype (``"float32"``, ``"bfloat16"`` ...).

    Raises :class:`InvalidArgumentError` for dtypes a tensor cannot be stored as.
    """
    name: str | None = None
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
    elif type(dtype).__module__.startswith("torch"):
        name = str(dtype).removeprefix("torch.")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
    if name is not None and name not in SUPPORTED_DTYPES:
        try:
            name = np.dtype(name).name
        except TypeError:
            pass
    if name not in SUPPORTED_DTYPES:
        raise InvalidArgumentError(
            f"unsupported tensor dtype {dtype!r}; supported: {', '.join(SUPPORTED_DTYPES)}"
        )
    return name


def arrow_value_type(name: str) -> pa.DataType | None:
    """The Arrow type whose buffer holds values of dtype ``name`` as they are, or ``None``
    (Arrow packs booleans into bits and has no complex or bfloat16 numbers).

    >>> arrow_value_type("float32"), arrow_value_type("bool")
    (DataType(float), None)
    """
    if name == BFLOAT16 or np.dtype(name).kind not in "iuf":
        return None
    return pa.from_numpy_dtype(np.dtype(name))


def storage_dtype(name: str) -> np.dtype:
    """The numpy dtype holding the raw values (bfloat16 is held as its uint16 bits)."""
    return np.dtype(np.uint16) if name == BFLOAT16 else np.dtype(name)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 raw bits (uint16) as exact float32 values."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype a user gets for ``name`` (bfloat16 needs the ml_dtypes package)."""
    if name != BFLOAT16:
        return np.dtype(name)
    ml = optional("ml_dtypes")
    if ml is None:
        raise TypeMismatchError(
            "numpy has no bfloat16 dtype (the ml_dtypes package is not installed)",
            hint="pass dtype=np.float32 (exact), use get_tensor_torch, or pip install ml_dtypes",
        )
    return np.dtype(ml.bfloat16)


def cast_checked(arr: np.ndarray, target: np.dtype, what: str) -> np.ndarray:
    """``arr.astype(target)`` that refuses to lose values silently.

    Integer targets refuse NaN, infinities, fractions and out-of-range values; float targets
    refuse values that would overflow to infinity and complex values with an imaginary part.
    Rounding to the nearest representable float is allowed (as numpy and torch do).
    """
    src = arr.dtype
    if src == target:
        return arr
    bad = None
    if src.kind == "c" and target.kind != "c" and arr.size and np.any(arr.imag != 0):
        bad = "complex values with an imaginary part"
    work = arr.real if src.kind == "c" and target.kind != "c" else arr
    if bad is None and target.kind in "iub" and work.size:
        if target.kind == "b":
            ok = np.all((work == 0) | (work == 1))
            bad = None if ok else "values other than 0 and 1"
        else:
            info = np.iinfo(target)
            if work.dtype.kind == "f":
                finite = np.all(np.isfinite(work))
                if not finite:
                    bad = "NaN or infinite values"
                elif np.any(work != np.trunc(work)):
                    bad = "fractional values"
                else:
                    lo, hi = float(work.min()), float(work.max())
                    if lo < float(info.min) or hi >= 2.0 ** (info.bits - (info.kind == "i")):
                        bad = f"values out of the range of {target}"
            elif work.dtype.kind in "iu":
                lo, hi = int(work.min()), int(work.max())
                if lo < int(info.min) or hi > int(info.max):
                    bad = f"values out of the range of {target}"
    if bad is None and target.kind in "fc" and work.size and work.dtype.kind in "fciu":
        with np.errstate(over="ignore", invalid="ignore"):
            out = work.astype(target)
        if np.any(np.isinf(out) & np.isfinite(work)):
            bad = f"values too large for {target}"
        else:
            return out
    if bad is not None:
        raise InvalidValueError(
            f"{what} holds {bad}, which dtype {target} cannot hold",
            hint="pick a wider dtype, or convert the values yourself",
        )
    return work.astype(target)


def torch_view(arr: np.ndarray, name: str | None = None) -> Any:
    """A ``torch.Tensor`` sharing memory with ``arr`` (read-only arrays too), no copy.

    ``name`` is the dtype name when it differs from ``arr.dtype`` (``"bfloat16"`` for raw
    uint16 bits). numpy refuses to hand read-only memory to torch; Arrow's DLPack export
    shares it. Writing into a tensor over read-only memory crashes the process.
    """
    torch = require("torch")
    name = name or arr.dtype.name
    tdt = getattr(torch, name)
    shape = arr.shape  # np.ascontiguousarray makes a 0-d array 1-d
    arr = np.ascontiguousarray(arr)
    if arr.size == 0:
        return torch.empty(shape, dtype=tdt)
    flat = arr.reshape(-1).view(np.uint8)
    if arr.flags.writeable:
        base = torch.from_numpy(flat)
    else:
        base = torch.from_dlpack(pa.array(flat, type=pa.uint8()))
    return base.view(tdt).reshape(shape)


# -- Arrow to numpy, pandas, polars, torch -------------------------------------------------


def column_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """numpy view of a numeric column (a copy only when it has several chunks).

    Built from the Arrow buffer directly: pyarrow's ``to_numpy`` imports pandas on its first
    call, which costs about half a second.
    """
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            col = col.chunk(0)
        else:
            dtype = arrow_numpy_dtype(col.type)
            if col.num_chunks == 0:
                return np.empty(0, dtype=dtype)
            return np.concatenate([column_numpy(c) for c in col.chunks])
    if col.null_count == 0 and (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        dtype = arrow_numpy_dtype(col.type)
        buf = col.buffers()[1]
        arr = np.frombuffer(buf, dtype=dtype, count=col.offset + len(col))[col.offset :]
        arr.flags.writeable = False
        return arr
    return col.to_numpy(zero_copy_only=False)


def fixed_size_list_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A ``fixed_size_list`` Arrow array as a 2-D numpy array ``(len, list_size)``.

    >>> fixed_size_list_numpy(pa.array([[1.0, 2.0]], pa.list_(pa.float32(), 2))).tolist()
    [[1.0, 2.0]]
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    width = arr.type.list_size
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(arr), width)


def history_pandas(table: pa.Table) -> Any:
    """A history table as a pandas DataFrame (numeric columns without a copy when possible).

    A mixed-type history's ``value`` column is a pandas ``ArrowDtype`` struct column, so its
    ints stay exact.
    """
    pd = require("pandas")
    return table.to_pandas(
        split_blocks=True,
        types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_struct(t) else None,
    )


def history_polars(table: pa.Table) -> Any:
    """A history table as a polars DataFrame."""
    pl = require("polars")
    return pl.from_arrow(table)


def to_torch(arr: np.ndarray, device: str = "cpu", *, copy: bool = False) -> Any:
    """``arr`` as a torch tensor on ``device``; shares memory on the CPU unless ``copy``.

    Read-only memory (a mapped file) is shared through DLPack; torch cannot mark tensors
    read-only, so writing into such a tensor crashes the process.
    """
    if copy or (not arr.flags.writeable and device != "cpu"):
        arr = np.array(arr)
    tensor = torch_view(arr)
    return tensor if device == "cpu" else tensor.to(device)

"""Host arrays in GPU memory with one host-to-device copy: the machinery of :mod:`synarrow.gpu`.

Use :mod:`synarrow.gpu`: it re-exports the public names of this module and adds the
database-facing ``history_to_device`` and ``tensor_to_device``. This module knows nothing of
databases or tensors, so the tensor layer uses it without an import circle.

Backends, tried in this order with ``backend="auto"``:

* ``"arrow"``: ``pyarrow.cuda`` (a ``CudaBuffer``), where pyarrow was built with CUDA
  (conda-forge builds; the PyPI wheels are not);
* ``"torch"``: a CUDA ``torch.Tensor``;
* ``"cupy"``: a CuPy array.

Memory-mapped history cannot be pinned (``cudaHostRegister`` on a read-only file mapping
fails or hangs), and copying pageable memory to the GPU runs at a fraction of the bus speed.
So the torch and CuPy paths stream the bytes through a small ring of pinned staging buffers
(two of 32 MiB) on two CUDA streams: while one buffer is being copied to the device, the CPU
fills the other, so the copy is not limited to the speed of pageable memory
(``benchmarks/bench_tensor.py`` measures it where a GPU is present).

The result is a :class:`DeviceArray`: it exports DLPack (``__dlpack__``), the CUDA Array
Interface and the Arrow C Device Data Interface (``__arrow_c_device_array__``). On the CPU
(``device="cpu"``) the same object wraps host memory without a copy, which is how the export
path is tested on machines without a GPU. Without a usable GPU, every GPU call raises
:class:`~synarrow.errors.GPUUnavailableError` that names each backend's reason; when a
library is installed but fails to initialise CUDA (driver mismatch, no device node), that
exception is the error's ``__cause__``. The rest of synarrow does not need a GPU.
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from synarrow.errors import (
    GPUUnavailableError,
    InvalidArgumentError,
    TypeMismatchError,
)
from synarrow.interop import BFLOAT16, arrow_value_type, dtype_name, storage_dtype, torch_view
from synarrow.optional import optional_or_error, require

STAGING_BYTES = 32 * 1024 * 1024
STAGING_SLOTS = 2
# Below this size the staging ring does not pay for itself: copy in one go.
_SMALL_BYTES = 1024 * 1024
BACKENDS = ("arrow", "torch", "cupy")

# Arrow C Device Data Interface (arrow/c/abi.h)
ARROW_DEVICE_CPU = 1
ARROW_DEVICE_CUDA = 2
_DEVICE_ID_OFFSET = 80  # after the 80-byte struct ArrowArray
_DEVICE_TYPE_OFFSET = 88
_SYNC_EVENT_OFFSET = 96


# -- devices and backends -------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A parsed device: ``type`` is ``"cpu"`` or ``"cuda"``, ``index`` the CUDA ordinal."""

    type: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"


def parse_device(device: Any) -> Device:
    """``"cuda"``, ``"cuda:1"``, ``1``, ``"cpu"`` or a ``torch.device`` as a :class:`Device`."""
    if isinstance(device, Device):
        return device
    if isinstance(device, int) and not isinstance(device, bool):
        return Device("cuda", device)
    text = str(device)
    kind, _, index = text.partition(":")
    if kind == "cpu" and not index:
        return Device("cpu")
    if kind == "cuda" and (not index or index.isdigit()):
        return Device("cuda", int(index or 0))
    raise InvalidArgumentError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


class _Probe(NamedTuple):
    """What probing one backend found: its module when usable, else why not."""

    module: Any | None
    reason: str
    error: BaseException | None = None  # raised while importing or initialising CUDA


def _probe(name: str, module_name: str, count: Any) -> _Probe:
    module, error = optional_or_error(module_name)
    if error is not None:
        return _Probe(None, f"importing {module_name} failed: {error}", error)
    if module is None:
        return _Probe(None, f"{module_name} is not installed (or not built with CUDA)")
    try:
        devices = count(module)
    except Exception as exc:  # a driver or runtime that fails to initialise
        return _Probe(None, f"{name} failed to initialise CUDA: {exc}", exc)
    if not devices:
        return _Probe(None, f"{name} sees no CUDA device")
    return _Probe(module, "")


def _arrow_cuda() -> _Probe:
    return _probe("pyarrow.cuda", "pyarrow.cuda", lambda m: m.Context.get_num_devices() > 0)


def _torch_cuda() -> _Probe:
    return _probe("torch", "torch", lambda m: m.cuda.is_available())


def _cupy() -> _Probe:
    return _probe("CuPy", "cupy", lambda m: m.cuda.runtime.getDeviceCount() > 0)


_PROBES = {"arrow": _arrow_cuda, "torch": _torch_cuda, "cupy": _cupy}


def available_backends() -> list[str]:
    """The GPU backends usable here, in the order ``backend="auto"`` tries them."""
    return [name for name in BACKENDS if _PROBES[name]().module is not None]


def is_available() -> bool:
    """Whether a CUDA device and a library to reach it (pyarrow.cuda, torch, CuPy) exist."""
    return bool(available_backends())


def _unavailable(message: str, probes: list[_Probe]) -> GPUUnavailableError:
    """The error for no usable backend: every probe's reason, chained to the first failure.

    A CUDA library that is installed but fails to initialise (driver mismatch, no device
    node, out of memory) is named here instead of looking like "no GPU".
    """
    reasons = "; ".join(p.reason for p in probes)
    err = GPUUnavailableError(f"{message} ({reasons})")
    err.__cause__ = next((p.error for p in probes if p.error is not None), None)
    return err


def _backend(backend: str) -> tuple[str, Any]:
    if backend == "auto":
        probes = []
        for name in BACKENDS:
            probe = _PROBES[name]()
            if probe.module is not None:
                return name, probe.module
            probes.append(probe)
        raise _unavailable("no CUDA device is usable", probes)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be 'auto' or one of {BACKENDS}, not {backend!r}")
    probe = _PROBES[backend]()
    if probe.module is None:
        raise _unavailable(f"the {backend!r} GPU backend has no usable CUDA device here", [probe])
    return backend, probe.module


def require_backend(backend: str = "auto") -> str:
    """The backend ``backend`` resolves to (``"auto"``: the first usable one); raises
    :class:`~synarrow.errors.GPUUnavailableError` when it cannot reach a GPU, so a caller
    can fail before it reads any data."""
    return _backend(backend)[0]


# -- host side ------------------------------------------------------------------------------


@dataclass
class _Host:
    """Host bytes to copy: C-contiguous uint8 segments, plus the shape and dtype they make."""

    segments: list[np.ndarray]
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    def joined(self) -> np.ndarray:
        """One array of the given dtype and shape (a view when there is one segment)."""
        if len(self.segments) == 1:
            flat = self.segments[0]
        elif self.segments:
            flat = np.concatenate(self.segments)
        else:
            flat = np.empty(0, dtype=np.uint8)
        return flat.view(storage_dtype(self.dtype)).reshape(self.shape)


def _u8(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)


def _column_host(col: pa.ChunkedArray | pa.Array, what: str) -> _Host:
    """A numeric or fixed-size-list Arrow column as host segments, one per chunk (no copy)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    t = col.type
    if col.null_count:
        raise TypeMismatchError(f"{what} holds {col.null_count} nulls; fill them first")
    if pa.types.is_fixed_size_list(t):
        value_t, width = t.value_type, t.list_size
    else:
        value_t, width = t, None
    name = np.dtype(value_t.to_pandas_dtype()).name if _is_number(value_t) else None
    if name is None:
        raise TypeMismatchError(f"{what} is {t}, not numbers or fixed-size vectors of numbers")
    segs = []
    for c in chunks:
        flat = c.flatten() if width is not None else c
        segs.append(_u8(flat.to_numpy(zero_copy_only=False)))
    n = len(col)
    return _Host(segs, (n,) if width is None else (n, width), dtype_name(name))


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _host(data: Any, dtype: str | None) -> _Host:
    """Anything accepted by :func:`to_device` (on the host) as :class:`_Host`."""
    if isinstance(data, (pa.Array, pa.ChunkedArray)):
        return _column_host(data, "the Arrow array")
    if type(data).__module__.startswith("torch") and hasattr(data, "detach"):
        t = data.detach().cpu().contiguous()
        name = dtype_name(t.dtype)
        if name == BFLOAT16:
            torch = require("torch")
            arr = t.view(torch.int16).numpy()
        else:
            arr = t.numpy()
        return _Host([_u8(arr)], tuple(arr.shape), name)
    arr = data if isinstance(data, np.ndarray) else np.asarray(data)
    if arr.dtype.kind not in "biufc" and arr.dtype.name != BFLOAT16:
        raise TypeMismatchError(f"only numeric arrays go to the GPU, got dtype {arr.dtype}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    name = dtype if dtype is not None else dtype_name(arr.dtype)
    if storage_dtype(name).itemsize != arr.dtype.itemsize:
        raise InvalidArgumentError(f"dtype {name} does not match the array's {arr.dtype}")
    return _Host([_u8(arr)], tuple(arr.shape), name)


# -- copies ---------------------------------------------------------------------------------


class _TorchRing:
    """Two pinned staging buffers and two CUDA streams of one device (see the module doc)."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch = torch
        self.device = device
        self.lock = threading.Lock()
        self.buffers = [
            torch.empty(STAGING_BYTES, dtype=torch.uint8, pin_memory=True)
            for _ in range(STAGING_SLOTS)
        ]
        self.streams = [torch.cuda.Stream(device) for _ in range(STAGING_SLOTS)]
        self.events: list[Any] = [None] * STAGING_SLOTS

    def copy(self, segments: list[np.ndarray], dst: Any) -> None:
        """Copy the host segments, back to back, into the uint8 CUDA tensor ``dst``."""
        torch = self.torch
        with self.lock:
            current = torch.cuda.current_stream(self.device)
            for s in self.streams:
                s.wait_stream(current)  # dst was allocated on the current stream
            slot = 0
            pos = 0
            for seg in segments:
                src = torch_view(seg)
                for off in range(0, seg.nbytes, STAGING_BYTES):
                    n = min(STAGING_BYTES, seg.nbytes - off)
                    event = self.events[slot]
                    if event is not None:
                        event.synchronize()  # the DMA out of this buffer is done
                    buf = self.buffers[slot][:n]
                    buf.copy_(src[off : off + n])  # the CPU part, overlapping the other DMA
                    stream = self.streams[slot]
                    with torch.cuda.stream(stream):
                        dst[pos : pos + n].copy_(buf, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(stream)
                    self.events[slot] = event
                    pos += n
                    slot = (slot + 1) % STAGING_SLOTS
            for s in self.streams:
                if dst.is_cuda:  # tell the caching allocator the side streams used dst
                    dst.record_stream(s)
                s.synchronize()


_RINGS: dict[tuple[str, int], Any] = {}
_RINGS_LOCK = threading.Lock()


def _torch_ring(torch: Any, index: int) -> _TorchRing | None:
    with _RINGS_LOCK:
        ring = _RINGS.get(("torch", index))
        if ring is None:
            try:
                ring = _RINGS["torch", index] = _TorchRing(torch, torch.device("cuda", index))
            except RuntimeError:  # no pinned memory (CPU-only torch, or pinning refused)
                return None
        return ring


def _to_torch(torch: Any, host: _Host, dev: Device) -> Any:
    device = torch.device("cuda", dev.index)
    dst = torch.empty(host.nbytes, dtype=torch.uint8, device=device)
    ring = _torch_ring(torch, dev.index) if host.nbytes > _SMALL_BYTES else None
    if ring is not None:
        ring.copy(host.segments, dst)
    else:
        pos = 0
        for seg in host.segments:
            if seg.nbytes:
                dst[pos : pos + seg.nbytes].copy_(torch_view(seg))
            pos += seg.nbytes
        torch.cuda.synchronize(device)
    return dst.view(getattr(torch, host.dtype)).reshape(host.shape)


def _to_cupy(cp: Any, host: _Host, dev: Device) -> Any:
    if host.dtype == BFLOAT16:
        raise TypeMismatchError("CuPy has no bfloat16 dtype", hint="use backend='torch'")
    cupyx = require("cupyx")
    with cp.cuda.Device(dev.index):
        dst = cp.empty(host.nbytes, dtype=cp.uint8)
        pinned = [cupyx.empty_pinned((STAGING_BYTES,), dtype=np.uint8) for _ in range(2)]
        streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
        events: list[Any] = [None, None]
        slot = pos = 0
        for seg in host.segments:
            for off in range(0, seg.nbytes, STAGING_BYTES):
                n = min(STAGING_BYTES, seg.nbytes - off)
                if events[slot] is not None:
                    events[slot].synchronize()
                np.copyto(pinned[slot][:n], seg[off : off + n])
                dst[pos : pos + n].set(pinned[slot][:n], stream=streams[slot])
                events[slot] = streams[slot].record()
                pos += n
                slot ^= 1
        for s in streams:
            s.synchronize()
        return dst.view(np.dtype(host.dtype)).reshape(host.shape)


def _to_arrow(cuda: Any, host: _Host, dev: Device) -> Any:
    ctx = cuda.Context(dev.index)
    buf = ctx.new_buffer(max(host.nbytes, 1))
    pos = 0
    for seg in host.segments:
        if seg.nbytes:
            buf.copy_from_host(pa.py_buffer(seg), position=pos, nbytes=seg.nbytes)
        pos += seg.nbytes
    return buf


# -- the device array -----------------------------------------------------------------------


class DeviceArray:
    """An array in device (or, for ``device="cpu"``, host) memory, from :func:`to_device`.

    Attributes:
        shape: the array's shape.
        dtype: dtype name (``"float32"``, ``"bfloat16"`` ...).
        device: ``"cpu"`` or ``"cuda:N"``.
        backend: ``"cpu"``, ``"arrow"``, ``"torch"`` or ``"cupy"``: what holds the memory.
    """

    def __init__(
        self, data: Any, backend: str, device: Device, shape: tuple[int, ...], dtype: str
    ) -> None:
        self._data = data
        self.backend = backend
        self._device = device
        self.shape = tuple(shape)
        self.dtype = dtype

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``."""
        return str(self._device)

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return math.prod(self.shape) * storage_dtype(self.dtype).itemsize

    @property
    def data(self) -> Any:
        """The object holding the memory: numpy array, torch tensor, CuPy array, CudaBuffer."""
        return self._data

    @property
    def ptr(self) -> int:
        """Address of the first byte (a device pointer for CUDA arrays)."""
        d = self._data
        if self.backend == "cpu":
            return int(d.__array_interface__["data"][0])
        if self.backend == "torch":
            return int(d.data_ptr())
        if self.backend == "cupy":
            return int(d.data.ptr)
        return int(d.address)

    def torch(self) -> Any:
        """The array as a ``torch.Tensor`` on its device, sharing memory.

        For CPU arrays over read-only memory the same warning as
        :meth:`TensorEngine.get_tensor_torch` applies: do not write into the tensor.
        """
        torch = require("torch")
        if self.backend == "torch":
            return self._data
        if self.backend == "cpu":
            return torch_view(self._data, self.dtype)
        if self.backend == "cupy":
            return torch.from_dlpack(self._data)
        return torch.as_tensor(self, device=str(self._device))

    def cupy(self) -> Any:
        """The array as a CuPy array on its device, sharing memory."""
        if self.backend == "cpu":
            raise InvalidArgumentError(
                "this array is in host memory", hint="use gpu.to_device(data, 'cuda')"
            )
        cp = require("cupy")
        if self.backend == "cupy":
            return self._data
        if self.backend == "torch":
            return cp.from_dlpack(self._data)
        return cp.asarray(self)

    def to_numpy(self) -> np.ndarray:
        """A host copy (the array itself for ``device="cpu"``)."""
        if self.backend == "cpu":
            return self._data  # type: ignore[no-any-return]
        if self.backend == "torch":
            t = self._data.cpu()
            if self.dtype == BFLOAT16:
                torch = require("torch")
                return t.view(torch.int16).numpy().view(np.uint16)  # type: ignore[no-any-return]
            return t.numpy()  # type: ignore[no-any-return]
        if self.backend == "cupy":
            return self._data.get()  # type: ignore[no-any-return]
        host = np.frombuffer(self._data.copy_to_host(), dtype=np.uint8)[: self.nbytes]
        return host.view(storage_dtype(self.dtype)).reshape(self.shape)

    # -- interchange ---------------------------------------------------------------------

    def __dlpack__(self, **kwargs: Any) -> Any:
        """DLPack export (delegated to the object holding the memory)."""
        if self.backend == "arrow":
            raise BufferError("pyarrow CUDA buffers have no DLPack export; use .cupy()/.torch()")
        if self.backend == "cpu":
            return self.torch().__dlpack__(**kwargs)
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        """(DLPack device type, device index): (1, 0) for CPU, (2, N) for CUDA."""
        return (1, 0) if self._device.type == "cpu" else (2, self._device.index)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """The CUDA Array Interface (version 3) of CUDA arrays (numba, CuPy, torch read it)."""
        if self._device.type != "cuda" or self.dtype == BFLOAT16:
            raise AttributeError("only CUDA arrays of numpy dtypes have a CUDA array interface")
        return {
            "shape": self.shape,
            "typestr": np.dtype(self.dtype).str,
            "data": (self.ptr, False),
            "version": 3,
            "strides": None,
            "stream": None,  # the copy is complete when to_device returns
        }

    def arrow_type(self) -> pa.DataType:
        """The Arrow type of the export: numbers for 1-D, fixed-size lists for 2-D, and the
        ``fixed_shape_tensor`` extension for more dimensions (one element per first-axis row).
        """
        value = arrow_value_type(self.dtype)
        if value is None:
            raise TypeMismatchError(
                f"dtype {self.dtype} has no Arrow type that shares the buffer as is",
                hint="Arrow exports support int8..uint64 and float16/32/64",
            )
        if len(self.shape) <= 1:
            return value
        if len(self.shape) == 2:
            return pa.list_(value, self.shape[1])
        return pa.fixed_shape_tensor(value, list(self.shape[1:]))

    def _arrow_array(self) -> pa.Array:
        """A pyarrow Array over this memory (a CPU-labelled view for torch/CuPy memory)."""
        t = self.arrow_type()
        rows = self.shape[0] if self.shape else 1
        if self.backend == "cpu":
            buf = pa.py_buffer(_u8(self._data)) if self.nbytes else pa.py_buffer(b"")
        elif self.backend == "arrow":
            buf = self._data
        else:
            # pyarrow cannot wrap foreign CUDA memory; it never reads the bytes when
            # exporting, so wrap the address and relabel the device in the exported struct.
            buf = pa.foreign_buffer(self.ptr, self.nbytes, base=self)
        if isinstance(t, pa.BaseExtensionType):
            value_t = t.storage_type.value_type
        elif pa.types.is_fixed_size_list(t):
            value_t = t.value_type
        else:
            return pa.Array.from_buffers(t, rows, [None, buf])
        width = math.prod(self.shape[1:])
        values = pa.Array.from_buffers(value_t, rows * width, [None, buf])
        storage = pa.FixedSizeListArray.from_arrays(values, width)
        if isinstance(t, pa.BaseExtensionType):
            return pa.ExtensionArray.from_storage(t, storage)
        return storage

    def __arrow_c_device_array__(self, requested_schema: Any = None, **kwargs: Any) -> Any:
        """Export as the Arrow C Device Data Interface: (schema capsule, device array capsule).

        The device type is ``ARROW_DEVICE_CUDA`` (2) for GPU memory, ``ARROW_DEVICE_CPU``
        (1) otherwise; the sync event is NULL since the data is ready when exported.
        """
        arr = self._arrow_array()
        schema, array = arr.__arrow_c_device_array__(requested_schema, **kwargs)
        if self.backend in ("torch", "cupy"):
            set_device(array, ARROW_DEVICE_CUDA, self._device.index)
        return schema, array

    def __arrow_c_schema__(self) -> Any:
        """The Arrow C schema capsule of the export."""
        return self.arrow_type().__arrow_c_schema__()

    def __repr__(self) -> str:
        return (
            f"<synarrow.gpu.DeviceArray shape={self.shape} dtype={self.dtype} "
            f"device={self.device} backend={self.backend}>"
        )


# -- Arrow C Device capsules ----------------------------------------------------------------

_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_GetPointer.restype = ctypes.c_void_p
_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def device_fields(array_capsule: Any) -> tuple[int, int, int]:
    """(device_type, device_id, sync_event address) of an ``arrow_device_array`` capsule."""
    base = _GetPointer(array_capsule, b"arrow_device_array")
    return (
        ctypes.c_int32.from_address(base + _DEVICE_TYPE_OFFSET).value,
        ctypes.c_int64.from_address(base + _DEVICE_ID_OFFSET).value,
        ctypes.c_void_p.from_address(base + _SYNC_EVENT_OFFSET).value or 0,
    )


def set_device(array_capsule: Any, device_type: int, device_id: int) -> None:
    """Set the device fields of an (unconsumed) ``arrow_device_array`` capsule."""
    base = _GetPointer(array_capsule, b"arrow_device_array")
    ctypes.c_int32.from_address(base + _DEVICE_TYPE_OFFSET).value = device_type
    ctypes.c_int64.from_address(base + _DEVICE_ID_OFFSET).value = device_id


# -- public entry points --------------------------------------------------------------------


def to_device(
    data: Any,
    device: Any = "cuda",
    *,
    backend: str = "auto",
    dtype: str | None = None,
) -> DeviceArray:
    """Copy ``data`` into the memory of ``device`` with one host-to-device copy.

    Args:
        data: a numpy array (memory-mapped history views included), a pyarrow Array or
            ChunkedArray of numbers or fixed-size vectors (chunks are copied one after the
            other, never joined on the host), a torch tensor, or anything numpy accepts.
        device: ``"cuda"``, ``"cuda:N"``, ``N`` or ``"cpu"`` (no copy: wraps host memory).
        backend: ``"auto"``, ``"arrow"`` (pyarrow.cuda), ``"torch"`` or ``"cupy"``.
        dtype: the dtype name when ``data`` holds raw bits of another (``"bfloat16"`` as
            uint16).

    Raises:
        GPUUnavailableError: ``device`` is a GPU but no backend can reach one.
    """
    dev = parse_device(device)
    if dev.type == "cuda" and type(data).__module__.startswith("torch"):
        torch = _torch_cuda().module
        if torch is not None and getattr(data, "is_cuda", False):
            moved = data.to(torch.device("cuda", dev.index))  # already on a GPU
            return DeviceArray(moved, "torch", dev, tuple(moved.shape), dtype_name(moved.dtype))
    host = _host(data, dtype)
    if dev.type == "cpu":
        return DeviceArray(host.joined(), "cpu", dev, host.shape, host.dtype)
    name, module = _backend(backend)
    if name == "torch":
        out = _to_torch(module, host, dev)
    elif name == "cupy":
        out = _to_cupy(module, host, dev)
    else:
        out = _to_arrow(module, host, dev)
    return DeviceArray(out, name, dev, host.shape, host.dtype)


def empty_cache() -> None:
    """Free the pinned staging buffers (they are kept between calls to save pinning time)."""
    with _RINGS_LOCK:
        _RINGS.clear()


__all__ = [
    "ARROW_DEVICE_CPU",
    "ARROW_DEVICE_CUDA",
    "BACKENDS",
    "Device",
    "DeviceArray",
    "available_backends",
    "device_fields",
    "empty_cache",
    "is_available",
    "parse_device",
    "require_backend",
    "set_device",
    "to_device",
]

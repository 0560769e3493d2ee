"""GPU buffers: a key's history or a stored tensor in GPU memory with one host-to-device copy.

Example (on a machine with a GPU)::

    from synarrow import gpu
    arr = gpu.history_to_device(db, "temperature", "cuda")
    arr.torch()       # a torch.Tensor on the GPU (no further copy)
    arr.__arrow_c_device_array__()   # for consumers of the Arrow C Device Data Interface

The copying itself (backends ``"arrow"``, ``"torch"``, ``"cupy"``, the pinned staging ring,
:class:`DeviceArray` and its DLPack / CUDA Array Interface / Arrow C Device Data Interface
exports) is :mod:`synarrow.device`; its public names are re-exported here. Without a usable
GPU every GPU call raises :class:`~synarrow.errors.GPUUnavailableError` naming each backend's
reason, and the rest of synarrow does not need a GPU.
"""

from __future__ import annotations

from typing import Any

from synarrow.device import (
    ARROW_DEVICE_CPU,
    ARROW_DEVICE_CUDA,
    BACKENDS,
    STAGING_BYTES,
    STAGING_SLOTS,
    Device,
    DeviceArray,
    available_backends,
    device_fields,
    empty_cache,
    is_available,
    parse_device,
    require_backend,
    set_device,
    to_device,
)
from synarrow.tensor import TensorEngine

__all__ = [
    "ARROW_DEVICE_CPU",
    "ARROW_DEVICE_CUDA",
    "BACKENDS",
    "STAGING_BYTES",
    "STAGING_SLOTS",
    "Device",
    "DeviceArray",
    "available_backends",
    "device_fields",
    "empty_cache",
    "history_to_device",
    "is_available",
    "parse_device",
    "require_backend",
    "set_device",
    "tensor_to_device",
    "to_device",
]


def history_to_device(
    db: Any, key: str, device: Any = "cuda", *, backend: str = "auto"
) -> DeviceArray:
    """The values of ``key``'s history (numbers, or same-size vectors) on ``device``.

    After compaction the bytes come straight from the memory-mapped file: one copy, to the
    device, with no host-side copy in between.
    """
    col = db.get_history(key).column("value")
    dev = parse_device(device)
    if dev.type == "cuda":
        require_backend(backend)  # fail before touching the data
    return to_device(col, dev, backend=backend)


def tensor_to_device(
    source: Any, pattern: str, device: Any = "cuda", *, backend: str = "auto"
) -> DeviceArray:
    """The tensor ``TensorEngine.get_tensor(pattern)`` on ``device`` (dtype kept, bfloat16 too).

    ``source``: a :class:`~synarrow.TensorEngine`, a :class:`~synarrow.SynaDB` or a path.
    """
    engine = source if isinstance(source, TensorEngine) else TensorEngine(source)
    try:
        dev = parse_device(device)
        if dev.type == "cuda":
            require_backend(backend)
        raw, name, scalar = engine.gather(pattern)
        if scalar:
            raw = raw.reshape(())
        return to_device(raw, dev, backend=backend, dtype=name)
    finally:
        if engine is not source:
            engine.close()

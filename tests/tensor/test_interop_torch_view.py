"""``interop.torch_view``: the one read-only-safe torch view, shapes kept (0-d too)."""

from __future__ import annotations

import numpy as np
import pytest

from synarrow.interop import torch_view

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3), (2, 0, 4)])
def test_shape_and_values_are_kept(shape: tuple[int, ...]) -> None:
    arr = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    t = torch_view(arr)
    assert tuple(t.shape) == shape and t.dtype == torch.float32
    assert t.numpy().tolist() == arr.tolist()


def test_shares_memory_with_writable_and_read_only_arrays() -> None:
    arr = np.arange(4, dtype=np.int64)
    t = torch_view(arr)
    arr[0] = 40
    assert t[0].item() == 40  # no copy
    frozen = np.arange(4, dtype=np.int64)
    frozen.flags.writeable = False
    t = torch_view(frozen)
    assert t.data_ptr() == frozen.ctypes.data
    bits = np.array([0x3F80], dtype=np.uint16)  # bfloat16 1.0 as raw bits
    assert torch_view(bits, "bfloat16").item() == 1.0

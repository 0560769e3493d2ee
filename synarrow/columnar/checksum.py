"""The checksum of the columnar files: XXH3-64 from the ``xxhash`` package.

XXH3 hashes at about memory speed (see the issue 11 rows of ``benchmarks/results.md``;
about 4x ``zlib.crc32``), so verifying a slice the first time it is read costs little next to the
page faults of reading it at all. It detects damage (bit flips, torn or swapped blocks); it
is not a cryptographic signature, so structure is validated as well before any use.
"""

from __future__ import annotations

import re
from typing import Any

import xxhash

__all__ = ["from_hex", "to_hex", "xxh3"]

_HEX = re.compile("[0-9a-f]{16}")


def xxh3(data: Any) -> int:
    """XXH3-64 of a bytes-like object (``bytes``, ``memoryview``, ``pyarrow.Buffer``)."""
    return int(xxhash.xxh3_64_intdigest(data))


def to_hex(value: int) -> str:
    """A checksum as the 16 lowercase hex digits stored in JSON."""
    return f"{value:016x}"


def from_hex(text: object) -> int:
    """Parse :func:`to_hex` output; raises ``ValueError`` for anything else."""
    if not isinstance(text, str) or _HEX.fullmatch(text) is None:
        raise ValueError(f"checksum {text!r} is not 16 lowercase hex digits")
    return int(text, 16)

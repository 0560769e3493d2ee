"""The names of the files in a database's ``log/`` directory, and nothing else.

The log directory holds only files synarrow writes:

* segments ``NNNNNNNN.log`` (the segment number, at least 8 decimal digits, no sign, no
  extra leading zeros beyond the 8-digit padding),
* their sidecars ``NNNNNNNN.idx``,
* temporaries of sidecars being replaced (``.NNNNNNNN.idx.tmp-<12 hex>``, and the fixed
  ``NNNNNNNN.idx.tmp`` / ``NNNNNNNN.tmp`` of older versions), removed by the next writer.

:func:`list_log_dir` refuses anything else (another name, a symlink, a directory) with
:class:`~synarrow.errors.CorruptionError`, so a planted file or link is never opened, and
never mistaken for one of ours.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from synarrow.errors import CorruptionError

__all__ = ["LogDirectory", "list_log_dir", "log_name_kind", "segment_name", "segment_path"]

_SEGMENT = re.compile(r"([0-9]{8,})\.log")
_SIDECAR = re.compile(r"([0-9]{8,})\.idx")
_TEMPORARY = re.compile(r"\.[0-9]{8,}\.idx\.tmp-[0-9a-f]{12}|[0-9]{8,}(\.idx)?\.tmp")


def segment_name(segment: int) -> str:
    """File name of a segment number."""
    return f"{segment:08d}.log"


def segment_path(directory: Path, segment: int) -> Path:
    """Path of a segment number inside the log directory."""
    return directory / segment_name(segment)


@dataclass
class LogDirectory:
    """What :func:`list_log_dir` found: segment numbers (sorted) and leftover temporaries."""

    segments: list[int] = field(default_factory=list)
    temporaries: list[Path] = field(default_factory=list)


def _number(match: re.Match[str] | None, name: str) -> int | None:
    if match is None:
        return None
    number = int(match.group(1))
    # Only the spelling the writer uses: "1.log" or "000000001.log" are not ours.
    return number if f"{number:08d}" == match.group(1) else None


def log_name_kind(name: str) -> tuple[str, int | None] | None:
    """What a name in ``log/`` is: ``("segment", n)``, ``("sidecar", n)``,
    ``("temporary", None)``, or ``None`` for a name synarrow never writes."""
    seg = _number(_SEGMENT.fullmatch(name), name)
    if seg is not None:
        return "segment", seg
    sidecar = _number(_SIDECAR.fullmatch(name), name)
    if sidecar is not None:
        return "sidecar", sidecar
    if _TEMPORARY.fullmatch(name):
        return "temporary", None
    return None


def list_log_dir(directory: Path) -> LogDirectory:
    """The segments and temporaries of ``directory``; :class:`CorruptionError` for any entry
    that is not a regular file with a name synarrow writes."""
    found = LogDirectory()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        name = entry.name
        if not entry.is_file(follow_symlinks=False):
            raise CorruptionError(
                f"log directory {directory} holds {name!r}, a symbolic link or not a regular "
                "file; synarrow only opens the plain files it wrote",
                hint="remove or replace it, or run `synarrow check PATH`",
            )
        kind = log_name_kind(name)
        if kind is not None and kind[0] == "segment" and kind[1] is not None:
            found.segments.append(kind[1])
        elif kind is not None and kind[0] == "temporary":
            found.temporaries.append(directory / name)
        elif kind is None:
            raise CorruptionError(
                f"log directory {directory} holds {name!r}, which is not a name synarrow "
                "writes; the database was damaged or crafted",
                hint="move the file out of the database directory, or run `synarrow check PATH`",
            )
    found.segments.sort()
    return found

"""Verify one log segment without opening the database: checksums, torn tail, decoding.

The log's counterpart of :mod:`synarrow.columnar.verify`, used by ``synarrow check``. It reads
with the same scanner and replay as opening does (in repair mode, so it reports every damaged
range instead of stopping at the first), then decodes every entry into Arrow the way reads
would, so an entry that passes its CRC but does not decode is found too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from synarrow.errors import SynaError
from synarrow.log.memtable import KeyState
from synarrow.log.reader import scan_segment
from synarrow.log.replay import replay_segment

__all__ = ["SegmentReport", "verify_segment"]


@dataclass
class SegmentReport:
    """What :func:`verify_segment` found in one segment."""

    path: Path
    size: int
    entries: int = 0
    skipped: list[tuple[int, int]] = field(default_factory=list)
    """Byte ranges whose entries fail their checksum (the entries after them verify)."""
    torn_bytes: int = 0
    """Bytes after the last valid entry (a torn tail if this is the last segment)."""
    valid_end: int = 0
    unreadable: str | None = None
    """Why the segment could not be scanned at all (its header, a link...), else None."""
    decode_error: str | None = None
    """Why entries that verify did not decode, else None."""

    @property
    def ok(self) -> bool:
        """Whether every entry verified and decoded (a torn tail is judged by the caller)."""
        return self.unreadable is None and not self.skipped and self.decode_error is None


def verify_segment(path: Path) -> SegmentReport:
    """Scan, replay and decode the segment at ``path``; never raises for damage."""
    size = path.lstat().st_size
    report = SegmentReport(path, size)
    try:
        scan = scan_segment(path, repair=True)
    except (SynaError, OSError) as exc:
        report.unreadable = exc.message if isinstance(exc, SynaError) else str(exc)
        return report
    report.entries = len(scan.offsets)
    report.skipped = list(scan.skipped)
    report.torn_bytes = scan.torn_bytes
    report.valid_end = scan.valid_end
    states: dict[bytes, KeyState] = {}

    def state_for(key: bytes) -> KeyState:
        st = states.get(key)
        if st is None:
            st = states[key] = KeyState(key.decode("utf-8"), key)
        return st

    try:
        replay_segment(scan, state_for)
        for st in states.values():
            st.tail_chunks()  # seal: every single entry is turned into Arrow too
    except Exception as exc:  # anything the decoder raises is damage, reported, not raised
        report.decode_error = (
            exc.message if isinstance(exc, SynaError) else f"{type(exc).__name__}: {exc}"
        )
    return report

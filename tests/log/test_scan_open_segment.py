"""scan_open_segment: a writer of a shared log reads the entries others appended to its
segment through its own descriptor; the same entries as a scan of the file, damage found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synarrow.errors import CorruptionError
from synarrow.log.format import Atom, encode_entry, flags_byte
from synarrow.log.reader import scan_open_segment, scan_segment, scan_segment_from
from synarrow.log.writer import LogWriter


def _writer(tmp_path: Path, entries: int) -> tuple[LogWriter, list[int]]:
    writer = LogWriter(tmp_path, 1, 0, existing_size=None, buffer_bytes=0)
    ends = []
    for i in range(entries):
        record = encode_entry(
            i + 1, f"k{i % 3}".encode(), b"v" * (i % 9), flags_byte(0, Atom.BYTES)
        )
        ends.append(writer.write(record, sync=True))
    return writer, ends


def test_it_finds_the_entries_a_scan_of_the_file_finds(tmp_path: Path) -> None:
    writer, ends = _writer(tmp_path, 40)
    try:
        for start_at in (0, 7, 39):
            start = ends[start_at - 1] if start_at else scan_segment(writer.path).offsets[0]
            got = scan_open_segment(writer.path, writer.fileno(), (1, 0), start, ends[-1])
            want = scan_segment_from(writer.path, start)
            assert (got.offsets + got.origin).tolist() == (want.offsets + want.origin).tolist()
            assert got.torn_bytes == 0 and got.origin + got.valid_end == ends[-1]
    finally:
        writer.close()


def test_an_end_inside_an_entry_is_a_torn_tail_and_damage_is_refused(tmp_path: Path) -> None:
    writer, ends = _writer(tmp_path, 10)
    try:
        fd = writer.fileno()
        torn = scan_open_segment(writer.path, fd, (1, 0), ends[3], ends[6] - 2)
        assert torn.torn_bytes > 0 and len(torn.offsets) == 2
        with pytest.raises(CorruptionError, match="no entries between"):
            scan_open_segment(writer.path, fd, (1, 0), ends[5], ends[4])
        middle = ends[4] + 6
        os.pwrite(fd, bytes([os.pread(fd, 1, middle)[0] ^ 0x40]), middle)
        with pytest.raises(CorruptionError):
            scan_open_segment(writer.path, fd, (1, 0), ends[3], ends[-1])
    finally:
        writer.close()

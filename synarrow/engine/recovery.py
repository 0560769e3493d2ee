"""Opening a database: rebuild the key states from the columnar index and the log tail.

:func:`recover` reads the columnar key index (its keys get their states on first use, see
:mod:`synarrow.engine.keystates`), lists and scans the live log segments (removing the
ones already folded into columnar files and leftover temporaries), replays their verified
entries, and for a writer cuts a torn tail off the last segment before deciding where new
entries go: after the last verified entry of that segment, or in a new one.

For a read-only handle that follows the writer it also returns where its replay stopped
(:class:`LogTail`), and :func:`continue_log` replays only what the log gained since, as
long as no compaction committed meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synarrow.columnar.key_index import KeyIndex
from synarrow.columnar.store import ColumnarStore
from synarrow.config import DbConfig
from synarrow.engine import keystates, ranges
from synarrow.engine.directory import LOG_DIR
from synarrow.errors import CorruptionError
from synarrow.fileio import open_fd, remove_file, require_single_link
from synarrow.log.memtable import KeyState
from synarrow.log.names import list_log_dir, segment_path
from synarrow.log.reader import (
    SegmentScan,
    never_written,
    scan_open_segment,
    scan_segment,
    scan_segment_from,
)
from synarrow.log.replay import Chains, replay_segment
from synarrow.log.sidecar import remove_sidecar
from synarrow.log.writer import LogWriter

__all__ = [
    "Continued",
    "LogTail",
    "Recovered",
    "continue_log",
    "continue_segment",
    "recover",
    "state_maker",
    "tail_at",
]


@dataclass
class LogTail:
    """Where a following reader's replay of the log stopped."""

    segment: int
    file: tuple[int, int]
    """``(st_dev, st_ino)`` of the segment file that was read."""
    end: int
    """The byte after the last verified entry read."""
    entries: int
    """Verified entries of the segment read so far."""
    base_seq: int
    chains: Chains
    """The keys' delta bases at :attr:`end` (see :func:`~synarrow.log.replay.replay_segment`)."""


def _tail_of(scan: SegmentScan, entries: int, chains: Chains) -> LogTail | None:
    """The tail after ``scan`` (``entries``: of its segment, counted from the start)."""
    try:
        st = os.stat(scan.path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return LogTail(
        scan.segment,
        (st.st_dev, st.st_ino),
        scan.origin + scan.valid_end,
        entries,
        scan.base_seq,
        chains,
    )


def tail_at(path: Path, segment: int, end: int, entries: int, base_seq: int) -> LogTail | None:
    """The tail of a writer of a shared log after its own entries: segment file ``path``
    (segment ``segment``, first sequence ``base_seq``) holds ``entries`` entries up to
    ``end``; ``None`` if the file is gone."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return LogTail(segment, (st.st_dev, st.st_ino), end, entries, base_seq, {})


def state_maker(
    states: dict[str, KeyState], index: KeyIndex, ties_first: bool
) -> Callable[[bytes], KeyState]:
    """What replay asks for a key's state: the one in ``states``, else one made from the
    columnar ``index`` (see :mod:`synarrow.engine.keystates`), else a new one, kept."""

    def state_for(key_bytes: bytes) -> KeyState:
        key = key_bytes.decode("utf-8")
        st = states.get(key)
        if st is None:
            st = keystates.load_key(states, index, key, ties_first)
            if st is None:
                st = states[key] = KeyState(key, key_bytes, ties_first=ties_first)
        return st

    return state_for


def _on_range(st: KeyState, start: int | None, end: int | None) -> None:
    ranges.apply_range(st, start, end)


@dataclass
class Recovered:
    """What opening found: the key states and where the log stands."""

    states: dict[str, KeyState]
    next_seq: int
    writer: LogWriter | None
    """The writer of the active segment (``None`` for a read-only handle)."""
    log_bytes_closed: int = 0
    """Bytes of the live segments before the active one."""
    torn_bytes: int = 0
    """Bytes of a torn tail cut off the last segment."""
    unread_tail: int = 0
    """Bytes at the end of the last segment that are no whole verified entry: a torn tail
    (a writer cuts it, see :attr:`torn_bytes`), or for a reader maybe an entry the writer
    is still writing."""
    repaired: list[tuple[str, int, int]] = field(default_factory=list)
    """Damaged ranges skipped in repair: ``(segment path, start, end)``."""
    dropped_in_repair: int = 0
    """Verified entries dropped in repair because their delta base was damaged."""
    clock: int = 0
    """Where the engine's clock for entries written without a timestamp continues: after
    the last timestamp it handed out (batches of many values may run ahead of the wall
    clock), bounded from the manifest and the replayed batches; 0 when none is known."""
    tail: LogTail | None = None
    """Where the replay stopped (``recover(follow=True)`` only)."""
    last: tuple[int, int, int] | None = None
    """``(segment, byte after its last verified entry, its base sequence)`` of the last
    segment, ``None`` if the log has none."""


def recover(
    path: Path,
    columnar: ColumnarStore,
    config: DbConfig,
    *,
    readonly: bool,
    repair: bool,
    replay_log: bool = True,
    follow: bool = False,
) -> Recovered:
    """Rebuild the key states of the database at ``path`` (its columnar store is open).

    ``replay_log=False`` (a snapshot, read-only) loads the columnar keys only. ``follow``
    (a read-only handle that follows the writer, or a writer of a shared log): also return
    where the replay stopped (:attr:`Recovered.tail`).
    """
    states: dict[str, KeyState] = {}
    ties_first = config.duplicates == "keep_first"
    # the columnar keys get their states on first use
    state_for = state_maker(states, columnar.open_keys(), ties_first)

    manifest = columnar.manifest
    if not replay_log:
        return Recovered(states, manifest.next_seq, None, clock=manifest.clock)
    log_dir = path / LOG_DIR
    listing = list_log_dir(log_dir)  # refuses links and names synarrow does not write
    segments = listing.segments
    if not readonly:
        for seg in [s for s in segments if s < manifest.first_segment]:
            remove_file(segment_path(log_dir, seg))  # folded into columnar files already
            remove_sidecar(segment_path(log_dir, seg))
        for tmp in listing.temporaries:
            remove_file(tmp)
    segments = [s for s in segments if s >= manifest.first_segment]
    found = Recovered(states, manifest.next_seq, None)
    last_scan: SegmentScan | None = None
    clock, replayed = manifest.clock, 0
    for i, seg in enumerate(segments):
        seg_path = segment_path(log_dir, seg)
        is_last = i == len(segments) - 1
        try:
            scan = scan_segment(seg_path, repair=repair, max_log_file_size=config.max_log_file_size)
        except CorruptionError:
            if not (is_last and never_written(seg_path)):
                raise
            # A crash while this segment was being started: it never held an entry.
            if not readonly:
                remove_file(seg_path)
            break
        if scan.torn_bytes and not is_last and not repair:
            raise CorruptionError(
                f"log segment {seg_path} ends in {scan.torn_bytes} damaged bytes but is not "
                "the last segment"
            )
        chains: Chains | None = {} if follow and is_last and not scan.skipped else None
        replay_segment(scan, state_for, on_range=_on_range, chains=chains)
        if chains is not None:
            found.tail = _tail_of(scan, len(scan.offsets), chains)
        clock = max(clock, scan.clock)
        replayed += len(scan.offsets)
        found.repaired.extend((str(seg_path), a, b) for a, b in scan.skipped)
        found.dropped_in_repair += scan.dropped
        found.next_seq = scan.base_seq + len(scan.offsets)
        if not is_last:
            found.log_bytes_closed += scan.file_size
        last_scan = scan
    # Entries written without a timestamp after the last stamped batch follow it one
    # microsecond apart at most, so the clock continues past all of them.
    found.clock = clock + replayed if clock else 0
    if last_scan is not None:
        found.unread_tail = last_scan.torn_bytes
        found.last = (last_scan.segment, last_scan.valid_end, last_scan.base_seq)
    if not readonly:
        found.writer = _open_writer(found, last_scan, manifest.first_segment, log_dir, config)
    return found


@dataclass
class Continued:
    """What :func:`continue_log` replayed."""

    tail: LogTail
    next_seq: int
    closed_bytes: int
    """Bytes of the segments that were completed meanwhile (the writer moved past them)."""
    unread_tail: int
    clock: int


def continue_log(
    path: Path,
    tail: LogTail,
    segments: tuple[int, ...],
    state_for: Callable[[bytes], KeyState],
    config: DbConfig,
    *,
    on_delete: Callable[[KeyState], None] | None = None,
    on_range: Callable[[KeyState, int | None, int | None], None] = _on_range,
) -> Continued | None:
    """Replay what the log of the database at ``path`` gained since ``tail``: the rest of
    that segment, then every later one of ``segments`` (the log as just listed). ``None``
    when the log did not grow from there (the segment is gone, or another file now): then
    the caller rebuilds from scratch. ``on_delete`` is called with each key a tombstone
    cleared, ``on_range`` applies each range tombstone.

    Every new entry is read and verified before any state changes, so damage raises
    :class:`CorruptionError` with the states as they were (an entry that passes its
    checksum but does not decode is found during the replay: the caller then rebuilds).
    """
    log_dir = path / LOG_DIR
    if tail.segment not in segments:
        return None
    seg_path = segment_path(log_dir, tail.segment)
    try:
        st = os.stat(seg_path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if (st.st_dev, st.st_ino) != tail.file or st.st_size < tail.end:
        return None
    scans = [scan_segment_from(seg_path, tail.end)]
    later = [s for s in segments if s > tail.segment]
    for i, seg in enumerate(later):
        later_path = segment_path(log_dir, seg)
        try:
            scans.append(scan_segment(later_path, max_log_file_size=config.max_log_file_size))
        except CorruptionError:
            if not (i == len(later) - 1 and never_written(later_path)):
                raise
            break  # being started: no entry yet
    for scan in scans[:-1]:
        if scan.torn_bytes:
            raise CorruptionError(
                f"log segment {scan.path} ends in {scan.torn_bytes} damaged bytes but is not "
                "the last segment"
            )
    first, last = scans[0], scans[-1]
    closed = sum(scan.origin + scan.file_size for scan in scans[:-1])
    last_chains: Chains = tail.chains if last is first else {}
    clock = 0
    for scan in scans:
        # the first scan continues its segment's chains; only the last one's are kept
        chains = tail.chains if scan is first else last_chains if scan is last else None
        replay_segment(scan, state_for, on_delete=on_delete, on_range=on_range, chains=chains)
        clock = max(clock, scan.clock)
    entries = len(last.offsets) + (tail.entries if last is first else 0)
    new_tail = _tail_of(last, entries, last_chains)
    if new_tail is None:
        return None
    return Continued(
        new_tail,
        last.base_seq + entries,
        closed,
        last.torn_bytes,
        clock,
    )


def continue_segment(
    writer: LogWriter,
    tail: LogTail,
    end: int,
    state_for: Callable[[bytes], KeyState],
    *,
    on_delete: Callable[[KeyState], None] | None = None,
    on_range: Callable[[KeyState, int | None, int | None], None] = _on_range,
) -> Continued | None:
    """:func:`continue_log` for a writer of a shared log whose segment the others appended
    to, up to ``end`` (the shared head's), since ``tail``: read through the writer's own
    descriptor, no listing and no ``stat``. ``None`` when the bytes up to ``end`` are not
    whole verified entries (the caller rebuilds)."""
    if writer.segment != tail.segment or writer.base_seq != tail.base_seq:
        return None
    scan = scan_open_segment(
        writer.path, writer.fileno(), (tail.segment, tail.base_seq), tail.end, end
    )
    if scan.torn_bytes:
        return None
    replay_segment(scan, state_for, on_delete=on_delete, on_range=on_range, chains=tail.chains)
    entries = tail.entries + len(scan.offsets)
    moved = LogTail(tail.segment, tail.file, end, entries, tail.base_seq, tail.chains)
    return Continued(moved, tail.base_seq + entries, 0, 0, scan.clock)


def _cut_torn_tail(scan: SegmentScan) -> None:
    """Truncate the segment after its last verified entry, durably."""
    fd = open_fd(scan.path, os.O_WRONLY, what="log segment")
    try:
        require_single_link(fd, scan.path, what="log segment")
        os.ftruncate(fd, scan.valid_end)
        os.fsync(fd)
    finally:
        os.close(fd)
    scan.size = scan.valid_end
    scan.unread = 0


def _open_writer(
    found: Recovered,
    last_scan: SegmentScan | None,
    first_segment: int,
    log_dir: Path,
    config: DbConfig,
) -> LogWriter:
    """Continue the last segment after its verified end, or start the next one.

    A torn tail is cut off first, so no new entry ever lands behind garbage.
    """
    if last_scan is not None and last_scan.torn_bytes:
        found.torn_bytes = last_scan.torn_bytes
        _cut_torn_tail(last_scan)
    if last_scan is not None and last_scan.size < config.max_log_file_size:
        return LogWriter(
            log_dir,
            last_scan.segment,
            last_scan.base_seq,
            existing_size=last_scan.valid_end,
            buffer_bytes=config.write_buffer_bytes,
            existing_offsets=last_scan.offsets.tobytes(),  # int64: a memcpy, not a list
        )
    if last_scan is not None:
        found.log_bytes_closed += last_scan.size
    seg = (last_scan.segment + 1) if last_scan is not None else first_segment
    return LogWriter(
        log_dir,
        seg,
        found.next_seq,
        existing_size=None,
        buffer_bytes=config.write_buffer_bytes,
    )

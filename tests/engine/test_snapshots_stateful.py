"""Snapshots against a model: every tag reads its own copy of the database, through every
read path, whatever is written, deleted, compacted, expired or reopened afterwards.

The model keeps each key's entries in write order and, per tag, a copy of the visible state
taken when the tag was made. Timestamps lie on an hourly grid a month in the past and the
retention cutoffs half an hour after a grid hour, so a rule's cutoff (``now - max_age``)
moves by seconds during a run and never crosses an entry: expectations are exact. Rules
only ever get stricter, so whether a compaction already dropped an expired point does not
change what any read shows.
"""

from __future__ import annotations

import bisect
import fnmatch
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import synarrow
from synarrow.errors import SnapshotExistsError, SnapshotInUseError, SnapshotNotFoundError

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
HOUR = 3_600_000_000
MINUTE = 60_000_000
HOURS = 24
# The grid starts 30 days ago; rule k's cutoff is grid hour k plus 30 minutes.
T0 = time.time_ns() // 1000
BASE = T0 - 30 * 24 * HOUR
FLOAT_KEYS = ("k0", "k1", "k2", "k/3")
TEXT_KEY = "s"
PATTERNS = ("k0", "k*", "*")

Entry = tuple[int, Any]
State = dict[str, list[Entry]]


def grid_ts(hour: int, minute: int) -> int:
    return BASE + hour * HOUR + minute * MINUTE


def max_age_for(k: int) -> int:
    """The max_age (µs) whose cutoff now lies at grid hour ``k`` + 30 minutes."""
    return T0 - (BASE + k * HOUR + 30 * MINUTE)


# Mostly the grid; sometimes the first minutes after the epoch (before every cutoff).
timestamps = st.builds(grid_ts, st.integers(0, HOURS - 1), st.integers(0, 20)) | st.integers(
    0, 20
).map(lambda m: m * MINUTE)
values = st.integers(-64, 64).map(lambda i: i / 4)  # exact sums in SQL
float_keys = st.sampled_from(FLOAT_KEYS)
any_keys = st.sampled_from((*FLOAT_KEYS, TEXT_KEY))


class SnapshotMachine(RuleBasedStateMachine):
    """A writer, its snapshots, and a model of both."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="snapstate-"))
        self.path = self.dir / "s.db"
        self.config = NO_SYNC
        self.db = synarrow.SynaDB(self.path, self.config)
        self.entries: State = {}  # key -> entries in write order (expired ones included)
        self.rules: dict[str, int] = {}  # pattern -> grid hour of its cutoff
        self.tags: dict[str, State] = {}
        self.counter = 0
        self.held: dict[str, synarrow.SynaDB] = {}  # tags kept open across other rules

    @initialize(
        policy=st.sampled_from(("keep_all", "keep_all", "keep_last", "keep_first")),
        auto=st.booleans(),
    )
    def start(self, policy: str, auto: bool) -> None:
        """The duplicates policy of the whole run, and whether compactions also start on
        their own in the background (after every few kB of log); nothing is written yet."""
        self.db.close()
        self.config = synarrow.DbConfig(
            sync_on_write=False,
            auto_compact=auto,
            compact_threshold_bytes=4096,
            duplicates=policy,
        )
        self.db = synarrow.SynaDB(self.path, self.config)

    # -- the model ---------------------------------------------------------------------------

    def cutoff(self, key: str) -> int | None:
        hours = [k for p, k in self.rules.items() if fnmatch.fnmatchcase(key, p)]
        return None if not hours else BASE + max(hours) * HOUR + 30 * MINUTE

    def visible(self) -> State:
        out: State = {}
        for key, entries in self.entries.items():
            cut = self.cutoff(key)
            kept = [e for e in entries if cut is None or e[0] >= cut]
            if kept:
                ordered = sorted(kept, key=lambda e: e[0])  # stable: ties in write order
                out[key] = dedup(ordered, self.config.duplicates)
        return out

    # -- writes ------------------------------------------------------------------------------

    @rule(key=any_keys, ts=timestamps, value=values)
    def append_one(self, key: str, ts: int, value: float) -> None:
        v: Any = f"t{value}" if key == TEXT_KEY else value
        self.db.append(key, v, timestamp=ts)
        self.entries.setdefault(key, []).append((ts, v))

    @rule(key=float_keys, batch=st.lists(st.tuples(timestamps, values), min_size=1, max_size=30))
    def append_batch(self, key: str, batch: list[tuple[int, float]]) -> None:
        ts = np.array([t for t, _ in batch], dtype=np.int64)
        self.db.append_batch(key, np.array([v for _, v in batch]), timestamps=ts)
        self.entries.setdefault(key, []).extend(batch)

    @rule(key=float_keys, n=st.integers(1, 40), hour=st.integers(0, HOURS - 1))
    def append_in_order(self, key: str, n: int, hour: int) -> None:
        ts = BASE + hour * HOUR + np.arange(n, dtype=np.int64) * 1000
        vals = np.arange(n) / 4.0
        self.db.append_batch(key, vals, timestamps=ts)
        self.entries.setdefault(key, []).extend(zip(ts.tolist(), vals.tolist(), strict=True))

    @rule(key=any_keys)
    def delete(self, key: str) -> None:
        deleted = self.db.delete(key)
        if key in self.visible():  # a key whose every entry expired may answer either way
            assert deleted
        elif key not in self.entries:
            assert not deleted
        self.entries.pop(key, None)

    @rule(key=any_keys, lo=st.none() | timestamps, hi=st.none() | timestamps)
    def delete_range(self, key: str, lo: int | None, hi: int | None) -> None:
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo

        def inside(e: Entry) -> bool:
            return (lo is None or e[0] >= lo) and (hi is None or e[0] < hi)

        shown = self.visible().get(key, [])
        removed = self.db.delete_range(key, lo, hi)
        assert removed == sum(1 for e in shown if inside(e))
        if removed and key in self.entries:
            self.entries[key] = [e for e in self.entries[key] if not inside(e)]

    @rule(pattern=st.sampled_from(PATTERNS), k=st.integers(0, HOURS // 2))
    def set_retention(self, pattern: str, k: int) -> None:
        k = max(k, self.rules.get(pattern, k))  # rules only get stricter (see the docstring)
        self.db.set_retention(pattern, max_age_for(k))
        self.rules[pattern] = k

    @rule(full=st.booleans())
    def compact(self, full: bool) -> None:
        self.db.compact(full=full)

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = synarrow.SynaDB(self.path, self.config)

    # -- snapshots ---------------------------------------------------------------------------

    @precondition(lambda self: len(self.tags) < 6)
    @rule(note=st.none() | st.text(max_size=20))
    def snapshot(self, note: str | None) -> None:
        self.counter += 1
        tag = f"v{self.counter}"
        info = self.db.snapshot(tag, note=note)
        assert (info.tag, info.note) == (tag, note)
        self.tags[tag] = self.visible()

    @precondition(lambda self: bool(self.tags))
    @rule(data=st.data())
    def snapshot_again(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(self.tags)))
        with pytest.raises(SnapshotExistsError):
            self.db.snapshot(tag.upper() if data.draw(st.booleans()) else tag)

    @precondition(lambda self: bool(self.tags))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(self.tags)))
        if tag in self.held:
            with pytest.raises(SnapshotInUseError):
                self.db.drop_snapshot(tag)
            check_reads(self.held[tag], self.tags[tag])  # the refused drop changed nothing
            return
        self.db.drop_snapshot(tag)
        del self.tags[tag]
        with pytest.raises(SnapshotNotFoundError):
            synarrow.SynaDB(self.path, snapshot=tag)

    @precondition(lambda self: bool(self.tags))
    @rule(data=st.data())
    def check_one_tag(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(self.tags)))
        self.check_tag(tag)

    @precondition(lambda self: bool(set(self.tags) - set(self.held)))
    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(set(self.tags) - set(self.held))))
        self.held[tag] = synarrow.SynaDB(self.path, snapshot=tag)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(self.held)))
        handle = self.held.pop(tag)
        check_reads(handle, self.tags[tag])  # read long after it was opened
        handle.close()

    @rule()
    def check_current(self) -> None:
        check_reads(self.db, self.visible())

    @invariant()
    def tags_listed(self) -> None:
        assert [i.tag for i in self.db.snapshots()] == sorted(self.tags, key=lambda t: int(t[1:]))

    # -- checks ------------------------------------------------------------------------------

    def check_tag(self, tag: str) -> None:
        want = self.tags[tag]
        with synarrow.SynaDB(self.path, snapshot=tag) as old:
            assert old.tag == tag
            check_reads(old, want)
        check_sql(lambda q: self.db.sql(q, snapshot=tag), want)
        check_diff(self.db.diff_snapshots(tag), want, self.visible())
        for other in sorted(self.tags):  # tag against tag, both ways round
            if other != tag:
                check_diff(self.db.diff_snapshots(tag, other), want, self.tags[other])
                break

    def teardown(self) -> None:
        try:
            for tag, handle in sorted(self.held.items()):
                check_reads(handle, self.tags[tag])
                handle.close()
            self.db.close()
            self.db = synarrow.SynaDB(self.path, self.config)
            for tag in sorted(self.tags):
                self.check_tag(tag)
            check_reads(self.db, self.visible())
        finally:
            for handle in self.held.values():
                handle.close()
            self.db.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def check_diff(diff: Any, before: State, after: State) -> None:
    """``diff_snapshots`` against the model: keys added, removed, changed, entry counts."""
    assert set(diff.added) == set(after) - set(before)
    assert set(diff.removed) == set(before) - set(after)
    changed = {k for k in set(after) & set(before) if after[k] != before[k]}
    assert set(diff.changed) == changed
    assert diff.unchanged == len(set(after) & set(before)) - len(changed)
    for key, change in diff.changes.items():
        counts = (len(before.get(key, ())), len(after.get(key, ())))
        assert (change.entries_before, change.entries_after) == counts


def dedup(ordered: list[Entry], policy: str) -> list[Entry]:
    """Entries of equal timestamps as the duplicates policy keeps them."""
    if policy == "keep_all":
        return ordered
    out: list[Entry] = []
    for e in ordered:
        if out and out[-1][0] == e[0]:
            if policy == "keep_last":
                out[-1] = e
        else:
            out.append(e)
    return out


def check_sql(sql: Any, want: State) -> None:
    """Per-key counts and sums through the ``history`` view."""
    got = sql("SELECT key, count(*) AS n, sum(value) AS s FROM history GROUP BY key").to_pylist()
    expect = {
        k: (len(es), sum(v for _, v in es) if k != TEXT_KEY else None) for k, es in want.items()
    }
    assert {r["key"]: (r["n"], r["s"]) for r in got} == expect


def check_reads(db: synarrow.SynaDB, want: State) -> None:
    """Every read path of ``db`` shows ``want``."""
    assert db.keys() == sorted(want)
    assert len(db) == len(want)
    assert db.keys("k*") == sorted(k for k in want if k.startswith("k"))
    assert db.keys("k0") == (["k0"] if "k0" in want else [])
    for key in (*FLOAT_KEYS, TEXT_KEY):
        entries = want.get(key)
        if entries is None:
            assert db.get(key, "absent") == "absent"
            assert not db.exists(key)
            continue
        ts = [t for t, _ in entries]
        vals = [v for _, v in entries]
        assert db.get(key) == vals[-1]
        probe = ts[len(ts) // 2]
        assert db.get(key, at=probe) == vals[bisect.bisect_right(ts, probe) - 1]
        assert db.get(key, "none", at=ts[0] - 1) == "none"
        table = db.get_history(key)
        assert table.column("value").to_pylist() == vals
        assert (table.column("ts").cast("int64").to_pylist()) == ts
        lo, hi = ts[min(1, len(ts) - 1)], ts[-1]
        part = [v for t, v in entries if lo <= t < hi]
        assert db.get_history(key, lo, hi).column("value").to_pylist() == part
        assert db.get_history(key, last=3).column("value").to_pylist() == vals[-3:]
        assert db.history_reader(key, lo, hi).read_all().column("value").to_pylist() == part
        if key != TEXT_KEY:
            assert db.get_history_floats(key).tolist() == vals
            assert db.get_history_floats(key, lo, hi, last=2).tolist() == part[-2:]
    floats = sorted(k for k in want if k != TEXT_KEY)
    if floats:
        table = db.read_table("k*")
        assert table.column("key").to_pylist() == [k for k in floats for _ in want[k]]
        assert table.column("value").to_pylist() == [v for k in floats for _, v in want[k]]
    check_sql(db.sql, want)


SnapshotMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_snapshots_read_their_copy = SnapshotMachine.TestCase


class SlowSnapshotMachine(SnapshotMachine):
    """The same machine, many more and longer runs."""


SlowSnapshotMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_snapshots_read_their_copy_soak = pytest.mark.slow(SlowSnapshotMachine.TestCase)

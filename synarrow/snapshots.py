"""Snapshots as users see them: what a tag holds, and what changed between two tags.

A snapshot (``db.snapshot(tag)``) is a named, immutable version of the whole database: every
key's history as of that moment, vectors and tensors included (they are keys too). It
copies no data; see :mod:`synarrow.columnar.tags` for how its files are pinned. Open one with
``SynaDB(path, snapshot=tag, readonly=True)``; compaction, deletes, range deletes and
retention never change what it reads.

>>> import synarrow, tempfile
>>> db = synarrow.SynaDB(tempfile.mkdtemp() + "/s.db")
>>> _ = db.append_batch("loss", [0.9, 0.5, 0.3])
>>> db.snapshot("v1", note="first epoch").entries
3
>>> _ = db.append("loss", 0.2); _ = db.append("acc", 0.8)
>>> d = db.diff_snapshots("v1")            # v1 against the current state
>>> d.added, d.changed, d.removed
(('acc',), ('loss',), ())
>>> with synarrow.SynaDB(db.path, snapshot="v1", readonly=True) as old:
...     old.get_history_floats("loss").tolist()
[0.9, 0.5, 0.3]
>>> db.close()
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from synarrow.columnar.manifest import Manifest
from synarrow.columnar.schema import history_table
from synarrow.columnar.tags import TagRecord
from synarrow.engine.snapshot import KeyView, ReadSnapshot

__all__ = ["KeyChange", "SnapshotDiff", "SnapshotInfo", "diff_reads", "infos"]


@dataclass(frozen=True)
class SnapshotInfo:
    """One tag of a database, as :meth:`SynaDB.snapshots` lists it."""

    tag: str
    """The tag."""
    created: dt.datetime
    """When it was taken (UTC); also the moment its retention cutoffs are computed at."""
    note: str | None
    """The note given to :meth:`SynaDB.snapshot`."""
    keys: int
    """Keys stored in it."""
    entries: int
    """Entries stored for them (before the duplicates policy and retention are applied)."""
    bytes: int
    """Bytes of the columnar files it reads (shared with other tags and the current state)."""
    exclusive_bytes: int
    """Bytes only it keeps on disk: what :meth:`SynaDB.drop_snapshot` would free now."""
    generation: int
    """The columnar generation it pins."""
    fingerprint: str
    """16 hex digits naming this exact snapshot (what ``run.log_input`` records, so a
    lineage can tell the tag it names from one dropped and taken again)."""


def infos(records: Iterable[TagRecord], current: Manifest) -> list[SnapshotInfo]:
    """The :class:`SnapshotInfo` of each record; ``current`` is the database's own manifest
    (its files are not counted as anybody's exclusive bytes)."""
    records = list(records)
    users: dict[str, int] = {}
    for r in records:
        for name in r.file_names():
            users[name] = users.get(name, 0) + 1
    live = {f.name for f in current.files} | ({current.index} if current.index else set())
    out = []
    for r in records:
        sizes = {f.name: f.bytes for f in r.manifest.files}
        if r.manifest.index:
            sizes[r.manifest.index] = r.manifest.index_bytes or 0
        exclusive = sum(n for name, n in sizes.items() if users[name] == 1 and name not in live)
        out.append(
            SnapshotInfo(
                tag=r.tag,
                created=r.created,
                note=r.note,
                keys=r.keys,
                entries=r.entries,
                bytes=r.data_bytes,
                exclusive_bytes=exclusive,
                generation=r.manifest.generation,
                fingerprint=r.fingerprint,
            )
        )
    return out


@dataclass(frozen=True)
class KeyChange:
    """How one key differs between two versions."""

    key: str
    kind: str
    """``"added"``, ``"removed"`` or ``"changed"``."""
    entries_before: int
    """Entries reads showed in the first version (0 if it was absent)."""
    entries_after: int
    """Entries reads show in the second version (0 if it is absent)."""


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from version :attr:`a` to version :attr:`b` (keys in sorted order)."""

    a: str | None
    """The first tag (``None``: the current state)."""
    b: str | None
    """The second tag (``None``: the current state)."""
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: int
    """How many keys read the same in both."""
    changes: Mapping[str, KeyChange]
    """Per added, removed or changed key: its entry counts before and after."""

    @property
    def entries_before(self) -> int:
        """Entries of the added, removed and changed keys in :attr:`a`."""
        return sum(c.entries_before for c in self.changes.values())

    @property
    def entries_after(self) -> int:
        """Entries of the added, removed and changed keys in :attr:`b`."""
        return sum(c.entries_after for c in self.changes.values())

    def __bool__(self) -> bool:
        return bool(self.changes)


def _count(view: KeyView) -> int:
    """Entries reads show, from the index alone where nothing is filtered out."""
    if (
        not view.tail
        and view.duplicates == "keep_all"
        and all(b.last_ts is not None for b in view.base)
        and _cutoff(view) is None
    ):
        return sum(b.count for b in view.base)
    return sum(len(c) for c in view.chunks())


def _cutoff(view: KeyView) -> int | None:
    """The view's retention cutoff, ``None`` when it hides nothing stored."""
    cutoff = view.not_before
    if cutoff is not None and all(
        b.first_ts is not None and b.first_ts >= cutoff for b in view.base
    ):
        return None
    return cutoff


def _identical(x: KeyView, y: KeyView) -> bool:
    """Whether two views read the very same stored slices the same way (no data read)."""
    return (
        not x.tail
        and not y.tail
        and x.duplicates == y.duplicates
        and [b.identity for b in x.base] == [b.identity for b in y.base]
        and _cutoff(x) == _cutoff(y)
    )


def _same(x: KeyView, y: KeyView) -> bool:
    """Whether two views of one key read the same history."""
    if _identical(x, y):
        return True
    cx, cy = x.chunks(), y.chunks()
    if sum(len(c) for c in cx) != sum(len(c) for c in cy):
        return False
    return bool(history_table(cx).equals(history_table(cy)))


def diff_reads(
    a: ReadSnapshot, b: ReadSnapshot, a_tag: str | None, b_tag: str | None
) -> SnapshotDiff:
    """Compare two read snapshots key by key (stored slices first, data only where they
    differ, so unchanged keys of two tags cost nothing to compare)."""
    added, removed, changed = [], [], []
    changes: dict[str, KeyChange] = {}
    unchanged = 0
    for key in sorted(set(a.keys) | set(b.keys)):
        x, y = a.keys.get(key), b.keys.get(key)
        if x is not None and y is not None and _identical(x, y):
            unchanged += 1
            continue
        nx = 0 if x is None else _count(x)
        ny = 0 if y is None else _count(y)
        if x is None or nx == 0:
            if y is None or ny == 0:
                continue  # every entry expired in both: no key in either
            added.append(key)
            changes[key] = KeyChange(key, "added", 0, ny)
        elif y is None or ny == 0:
            removed.append(key)
            changes[key] = KeyChange(key, "removed", nx, 0)
        elif _same(x, y):
            unchanged += 1
        else:
            changed.append(key)
            changes[key] = KeyChange(key, "changed", nx, ny)
    return SnapshotDiff(
        a_tag, b_tag, tuple(added), tuple(removed), tuple(changed), unchanged, changes
    )

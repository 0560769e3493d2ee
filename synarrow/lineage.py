"""Lineage records: which tagged snapshot of which database a run read, and which run made a
model version.

A :class:`DataInput` names one snapshot (``db.snapshot(tag)``) of one database by its
absolute path and tag, with what the snapshot held (keys, entries, creation time) and a
fingerprint of that exact version (:attr:`~synarrow.columnar.tags.TagRecord.fingerprint`).
Runs record them with :meth:`Run.log_input <synarrow.Run.log_input>`; model versions saved
with ``run_id=`` copy them (:meth:`ModelRegistry.lineage <synarrow.ModelRegistry.lineage>`).
Only snapshots are recorded, never a database's current state: that changes with every
write, so a lineage pointing at it would not say what was read.

A :class:`RunInfo` names a run by id, experiment and store path, so a model's lineage still
says where its run came from when the experiment store has moved or is gone.

>>> import synarrow, tempfile
>>> db = synarrow.SynaDB(tempfile.mkdtemp() + "/train.db")
>>> _ = db.append_batch("x", [1.0, 2.0, 3.0])
>>> _ = db.snapshot("v1")
>>> inp = snapshot_input(db, "v1")
>>> inp.tag, inp.keys, inp.entries, inp.verified
('v1', 1, 3, True)
>>> db.drop_snapshot("v1")
>>> inp.checked().verified                  # the snapshot it names is gone
False
>>> db.close()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synarrow.columnar.tags import SNAPSHOTS_DIR, check_tag, read_record
from synarrow.db import SynaDB
from synarrow.engine.directory import COLUMNAR_DIR, prepare_directory
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    SnapshotNotFoundError,
    SynaError,
)
from synarrow.records import datetime_to_us, us_to_datetime

__all__ = ["RUN_ID_PATTERN", "DataInput", "RunInfo", "snapshot_input"]

#: A run id: 32 lowercase hex digits.
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class DataInput:
    """One tagged snapshot of a database that a run read (see the module documentation)."""

    path: str
    """The database directory, absolute (symlinks resolved)."""
    tag: str
    """The snapshot's tag."""
    created: dt.datetime
    """When the snapshot was taken (UTC)."""
    keys: int
    """Keys stored in the snapshot."""
    entries: int
    """Entries stored for them."""
    fingerprint: str
    """16 hex digits identifying that exact snapshot (a tag dropped and taken again under
    the same name gets another one)."""
    name: str | None = None
    """The label given to :meth:`Run.log_input <synarrow.Run.log_input>` (``"train"``)."""
    verified: bool = False
    """Whether, when this object was made, the database still held the tag with the same
    fingerprint and every file the tag pins was there, whole in size (their bytes are not
    hashed: ``synarrow check`` does that). Records as stored (``ModelVersion.inputs``) are
    not checked: ``False``."""
    logged_at: dt.datetime | None = None
    """When the run first recorded it (UTC)."""

    @property
    def digest(self) -> str:
        """A short stable id of (path, tag, fingerprint): what makes two inputs the same."""
        text = "\0".join((self.path, self.tag, self.fingerprint))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def checked(self) -> DataInput:
        """A copy with :attr:`verified` set from the database as it is now (never raises:
        a missing database, tag or damaged record is ``verified=False``)."""
        try:
            path = Path(self.path)
            prepare_directory(path, readonly=True)
            record = read_record(path / SNAPSHOTS_DIR, self.tag)
            ok = record.fingerprint == self.fingerprint and record.files_present(
                path / COLUMNAR_DIR
            )
        except (SynaError, OSError):
            ok = False
        return dataclasses.replace(self, verified=ok)

    def open(self) -> SynaDB:
        """The snapshot as a read-only :class:`~synarrow.SynaDB` (``SynaDB(path,
        snapshot=tag)``), after checking it is still the very version recorded:
        :class:`~synarrow.SnapshotNotFoundError` if the tag is gone or now names another
        snapshot."""
        db = SynaDB(self.path, snapshot=self.tag)
        try:
            now = snapshot_input(db, self.tag).fingerprint
        except BaseException:
            db.close()
            raise
        if now != self.fingerprint:
            db.close()
            raise SnapshotNotFoundError(
                f"snapshot {self.tag!r} of {self.path} is not the one recorded (fingerprint "
                f"{now}, recorded {self.fingerprint}): it was dropped and taken again",
                hint="the data this lineage names is gone; the tag names newer data",
            )
        return db

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored for this input (``verified`` is not stored)."""
        return {
            "path": self.path,
            "tag": self.tag,
            "created_us": datetime_to_us(self.created),
            "keys": self.keys,
            "entries": self.entries,
            "fingerprint": self.fingerprint,
            "name": self.name,
            "logged_us": None if self.logged_at is None else datetime_to_us(self.logged_at),
        }

    @classmethod
    def from_dict(cls, d: object, what: str) -> DataInput:
        """Parse :meth:`to_dict` output; anything else is a :class:`CorruptionError` naming
        ``what`` (where the record was stored)."""
        try:
            if not isinstance(d, dict):
                raise TypeError("not a JSON object")
            path, tag, fp, name = d["path"], d["tag"], d["fingerprint"], d.get("name")
            logged = d.get("logged_us")
            ok = (
                isinstance(path, str)
                and os.path.isabs(path)
                and isinstance(fp, str)
                and _FINGERPRINT.fullmatch(fp) is not None
                and (name is None or isinstance(name, str))
                and all(type(d[k]) is int and d[k] >= 0 for k in ("keys", "entries"))
                and type(d["created_us"]) is int
                and (logged is None or type(logged) is int)
            )
            if not ok:
                raise TypeError("fields of wrong types")
            return cls(
                path=path,
                tag=check_tag(tag),
                created=us_to_datetime(d["created_us"]),
                keys=d["keys"],
                entries=d["entries"],
                fingerprint=fp,
                name=name,
                logged_at=us_to_datetime(logged),
            )
        except (KeyError, TypeError, ValueError, OverflowError, InvalidArgumentError) as exc:
            raise CorruptionError(f"data input record of {what} is damaged: {exc}") from exc


@dataclass(frozen=True)
class RunInfo:
    """A run as lineage names it: enough to find it again, even after its store moved."""

    id: str
    """The run id (32 hex digits)."""
    experiment: str
    """The experiment's name."""
    path: str
    """The experiment store's directory (absolute) when the lineage was recorded."""
    name: str | None = None
    """The run's readable name."""
    status: str | None = None
    """``"running"``, ``"completed"``, ``"failed"`` or ``"killed"`` as read from the store
    now; ``None`` when the store cannot be reached (moved, deleted) or the run is not in it."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored for this run (``status`` is not stored: it changes)."""
        return {"id": self.id, "experiment": self.experiment, "path": self.path, "name": self.name}

    @classmethod
    def from_dict(cls, d: object, what: str) -> RunInfo:
        """Parse :meth:`to_dict` output; anything else is a :class:`CorruptionError`."""
        try:
            if not isinstance(d, dict):
                raise TypeError("not a JSON object")
            rid, exp, path, name = d["id"], d["experiment"], d["path"], d.get("name")
            if not (
                isinstance(rid, str)
                and RUN_ID_PATTERN.fullmatch(rid)
                and isinstance(exp, str)
                and exp
                and isinstance(path, str)
                and (name is None or isinstance(name, str))
            ):
                raise TypeError("fields of wrong types")
            return cls(id=rid, experiment=exp, path=path, name=name)
        except (KeyError, TypeError) as exc:
            raise CorruptionError(f"run record of {what} is damaged: {exc}") from exc


def _tag_of(db_or_path: object, snapshot: object) -> tuple[Path, str]:
    if isinstance(db_or_path, SynaDB):
        db_or_path.require_open()
        own = db_or_path.tag
        if snapshot is None:
            if own is None:
                raise InvalidArgumentError(
                    f"no snapshot given for {db_or_path.describe()}: a lineage that points at "
                    "a database's current state would be a lie, since every later write "
                    "changes it",
                    hint="take a snapshot first (db.snapshot('v1')) and pass snapshot='v1', "
                    "or pass a handle opened with SynaDB(path, snapshot='v1')",
                )
            snapshot = own
        elif own is not None and snapshot != own:
            raise InvalidArgumentError(
                f"snapshot={snapshot!r} given for a handle that reads snapshot {own!r}"
            )
        path = db_or_path.path
    elif isinstance(db_or_path, (str, os.PathLike)):
        path = Path(db_or_path)
        if snapshot is None:
            raise InvalidArgumentError(
                f"no snapshot given for database {path}: a lineage that points at a "
                "database's current state would be a lie, since every later write changes it",
                hint="take a snapshot first (db.snapshot('v1')) and pass snapshot='v1'",
            )
    else:
        raise InvalidArgumentError(
            f"expected a SynaDB or a database path, got {type(db_or_path).__name__}",
            hint="pass the SynaDB the data was read from, or its directory",
        )
    return path.resolve(), check_tag(snapshot)


def snapshot_input(
    db_or_path: SynaDB | str | os.PathLike[str],
    snapshot: str | None = None,
    *,
    name: str | None = None,
) -> DataInput:
    """The :class:`DataInput` of snapshot ``snapshot`` of a database (a :class:`SynaDB` of any
    kind, or its directory), read from the tag's record (no data is read; nothing is opened).

    ``snapshot=None`` takes the tag of a snapshot handle (``SynaDB(path, snapshot=tag)``)
    and is refused for anything else (:class:`~synarrow.InvalidArgumentError`).
    :class:`~synarrow.SnapshotNotFoundError` for an unknown tag,
    :class:`~synarrow.InvalidPathError` for a directory that is not a database.
    """
    path, tag = _tag_of(db_or_path, snapshot)
    prepare_directory(path, readonly=True)  # a synarrow database (refused otherwise)
    record = read_record(path / SNAPSHOTS_DIR, tag)
    return DataInput(
        path=str(path),
        tag=tag,
        created=record.created,
        keys=record.keys,
        entries=record.entries,
        fingerprint=record.fingerprint,
        name=name,
        verified=True,
    )

"""``ModelRegistry``: versioned model files with SHA-256 checksums, stages, aliases and lineage.

Layout of a registry directory (it is also a plain :class:`~synarrow.SynaDB`)::

    models.db/
      SYNARROW, log/, columnar/ ...   the SynaDB: one JSON entry per version and stage change
      blobs/<sha256>                  the model bytes, one immutable file per distinct content

Keys in the SynaDB: ``models/<name>/versions/<n>`` (the version's JSON; every stage change
appends a new entry, so the key's history is the audit trail),
``models/<name>/versions/@<alias>`` (JSON ``{"version": n}``, ``{"version": null}`` once
deleted: the key's history is the alias's audit trail) and ``models/<name>/next_version``
(version numbers are never reused, as in MLflow).

Aliases (as in MLflow): a name such as ``champion`` that points at one version at a time,
beside the stages. :meth:`ModelRegistry.set_alias` moves it, :meth:`ModelRegistry.load_model`
with ``alias=`` loads what it points at, :meth:`ModelRegistry.delete_alias` removes it. A
version that an alias points at cannot be deleted (:class:`~synarrow.InvalidStateError`
naming the alias): a serving job that loads ``champion`` never finds it silently gone.

Lineage: ``save_model(..., run_id=run.id)`` records the run that produced a version, and copies
into the version's record the run's experiment, store path and the data snapshots it read
(:meth:`Run.log_input <synarrow.Run.log_input>`), so the lineage survives the experiment store
being moved or deleted. :meth:`ModelRegistry.lineage` returns model -> run -> data snapshots,
each snapshot checked against its database as it is now.

Durability: a model's bytes are streamed to ``blobs/tmp-*``, fsynced, renamed to their
SHA-256 and the directory fsynced before the version's metadata is written and fsynced.
When :meth:`ModelRegistry.save_model` returns, the version survives a power loss. A crash
in between leaves at most an unreferenced blob (never a version without its bytes).

Memory: saving from a path or a file object and loading with ``path=`` move the bytes in
chunks (two buffers of ``chunk_size``), whatever the model size. Loading without ``path``
returns ``bytes`` and so holds the model once (not twice). SHA-256 is computed in a second
thread while the main thread reads or writes (hashlib releases the GIL), so the checksum costs
little time on a machine with two cores.

>>> import synarrow
>>> reg = synarrow.ModelRegistry("models.db")
>>> v = reg.save_model("classifier", b"...weights...", {"accuracy": "0.95"})
>>> data, info = reg.load_model("classifier")
>>> data, info.version
(b'...weights...', 1)
>>> reg.close()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from synarrow.blobs import DEFAULT_CHUNK_SIZE, MODELS_DIR, BlobStore, Source
from synarrow.db import SynaDB
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidStateError,
    InvalidValueError,
    NotFoundError,
    SynaError,
)
from synarrow.experiment import Experiment, Run, find_run
from synarrow.handle import Handle
from synarrow.lineage import RUN_ID_PATTERN, DataInput, RunInfo
from synarrow.records import check_name, datetime_to_us, now_us, to_json, us_to_datetime
from synarrow.shared_writer import SharedWriter, open_shared, release_shared

__all__ = [
    "ALIAS_PATTERN",
    "STAGES",
    "Lineage",
    "ModelRegistry",
    "ModelVersion",
    "check_alias",
    "normalize_stage",
]

STAGES = ("Development", "Staging", "Production", "Archived")
#: An alias: 1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``, and not a number.
ALIAS_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model.

    Attributes:
        version: 1, 2, 3 ... in order of saving; numbers are never reused.
        checksum: SHA-256 of the model bytes, lowercase hex.
        size_bytes: size of the model bytes.
        stage: ``"Development"`` (default), ``"Staging"``, ``"Production"`` or ``"Archived"``.
        created_at: when it was saved (UTC).
        metadata: the JSON object given to ``save_model``.
        name: the model's name.
        run_id: the run that produced it (``save_model(..., run_id=)``), or ``None``.
        aliases: the aliases pointing at it now, sorted (not part of the stored record).
        run: the run as recorded at save time (experiment, store path, name).
        inputs: the data snapshots the run had read when the version was saved, as recorded
            (``verified`` is ``False``: not checked; :meth:`ModelRegistry.lineage` checks).
    """

    version: int
    checksum: str
    size_bytes: int
    stage: str
    created_at: dt.datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    run_id: str | None = None
    aliases: tuple[str, ...] = ()
    run: RunInfo | None = field(default=None, repr=False)
    inputs: tuple[DataInput, ...] = field(default=(), repr=False)

    def to_json(self) -> str:
        """The JSON record stored for this version (one entry per save and stage change)."""
        record: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "checksum": self.checksum,
            "size_bytes": self.size_bytes,
            "stage": self.stage,
            "created_us": datetime_to_us(self.created_at),
            "metadata": self.metadata,
        }
        if self.run_id is not None:
            record["run_id"] = self.run_id
            record["run"] = None if self.run is None else self.run.to_dict()
            record["inputs"] = [i.to_dict() for i in self.inputs]
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, name: str, version: int) -> ModelVersion:
        """Parse a stored version record; it must be the record of ``name`` ``version``."""
        try:
            d = json.loads(text)
            what = f"model {name!r} version {version}"
            run_id = d.get("run_id")
            if run_id is not None and (
                not isinstance(run_id, str) or RUN_ID_PATTERN.fullmatch(run_id) is None
            ):
                raise ValueError(f"run_id {run_id!r:.60} is not a run id")
            run = None if d.get("run") is None else RunInfo.from_dict(d["run"], what)
            if (run is None) != (run_id is None) or (run is not None and run.id != run_id):
                raise ValueError("its run record does not match its run_id")
            stored_inputs = d.get("inputs", [])
            if not isinstance(stored_inputs, list):
                raise ValueError("'inputs' is not a list")
            info = cls(
                version=d["version"],
                checksum=d["checksum"],
                size_bytes=d["size_bytes"],
                stage=d["stage"],
                created_at=us_to_datetime(d["created_us"]),
                metadata=d.get("metadata", {}),
                name=d["name"],
                run_id=run_id,
                run=run,
                inputs=tuple(DataInput.from_dict(i, what) for i in stored_inputs),
            )
            ok = (
                type(info.version) is int
                and type(info.size_bytes) is int
                and info.size_bytes >= 0
                and isinstance(info.checksum, str)
                and isinstance(info.metadata, dict)
                and type(d["created_us"]) is int
                and info.stage in STAGES
                and info.name == name
                and info.version == version
            )
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise CorruptionError(f"stored model version {text[:80]!r} is damaged: {exc}") from exc
        if not ok:
            raise CorruptionError(
                f"stored model version {text[:80]!r} has fields of wrong types, or is not the "
                f"record of {name!r} version {version}"
            )
        return info


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: model -> run -> data snapshots.

    Returned by :meth:`ModelRegistry.lineage`. ``run`` is ``None`` (and ``inputs`` empty)
    for a version saved without ``run_id``.
    """

    model: ModelVersion
    """The version."""
    run: RunInfo | None
    """The run that produced it; ``status`` read from its store now (``None`` when the store
    cannot be reached)."""
    inputs: tuple[DataInput, ...] = ()
    """The snapshots the run had read when the version was saved, each checked now."""

    @property
    def verified(self) -> bool:
        """Whether the data is still there exactly as read: the version has inputs and every
        one of them still exists with its recorded fingerprint."""
        return bool(self.inputs) and all(i.verified for i in self.inputs)


def check_alias(alias: object) -> str:
    """``alias`` if it is a valid alias name, else :class:`~synarrow.InvalidArgumentError`.

    1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``, not a number (``"3"``,
    ``"1.5"``, ``"nan"``) and not a stage name in any case (``"Production"``), so an alias
    is never mistaken for a version or a stage (``load_model(name, "Production")``).
    """
    ok = isinstance(alias, str) and ALIAS_PATTERN.fullmatch(alias) is not None
    if ok and alias.lower() in {s.lower() for s in STAGES}:  # type: ignore[union-attr]
        raise InvalidArgumentError(
            f"alias {alias!r} is spelt like a stage; load_model(name, {alias!r}) names the stage",
            hint="pick another name (for example 'champion', 'prod-eu')",
        )
    if ok:
        try:
            float(alias)  # type: ignore[arg-type]
            ok = False
        except ValueError:
            pass
    if not ok:
        shown = repr(alias) if isinstance(alias, str) else type(alias).__name__
        raise InvalidArgumentError(
            f"invalid alias {shown:.80}",
            hint="use 1 to 64 ASCII letters, digits, '_', '.' or '-', not a number "
            "(for example 'champion', 'challenger', 'prod-eu')",
        )
    return alias  # type: ignore[return-value]


def normalize_stage(stage: object) -> str:
    """The canonical spelling of a stage (case-insensitive), or InvalidValueError."""
    if isinstance(stage, str):
        for s in STAGES:
            if s.lower() == stage.lower():
                return s
    raise InvalidValueError(
        f"invalid stage {stage!r}", hint=f"stages are {', '.join(STAGES)} (case-insensitive)"
    )


class ModelRegistry(Handle):
    """Versioned model storage with SHA-256 verification and lifecycle stages.

    >>> import pathlib, synarrow
    >>> _ = pathlib.Path("model.pt").write_bytes(b"weights")
    >>> reg = synarrow.ModelRegistry("staged.db")
    >>> v = reg.save_model("classifier", "model.pt", {"accuracy": 0.95})
    >>> reg.set_stage("classifier", v.version, "Production").stage
    'Production'
    >>> data, info = reg.load_model("classifier", "Production")
    >>> data, info.stage
    (b'weights', 'Production')
    >>> reg.close()

    Args:
        path: the registry directory (a SynaDB plus ``blobs/``); created if missing.
        readonly: open without the writer lock, to read while another process writes
            (sees the versions as of opening).
        timeout: seconds to wait when another process holds the writer lock, before
            :class:`~synarrow.DatabaseLockedError` (default: fail at once).
        chunk_size: bytes per read / write when streaming model files.

    One process at a time may write a registry; registries (and experiments) on the same
    path inside one process share one handle.
    """

    kind: ClassVar[str] = "model registry"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        timeout: float = 0.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(Path(path), readonly=readonly)
        self._lock = threading.RLock()
        self._blobs = BlobStore(self.path / MODELS_DIR, chunk_size=chunk_size)
        self._shared: SharedWriter | None = None
        if readonly:
            self._db = SynaDB(self.path, readonly=True)
        else:
            self._shared = open_shared(self.path, timeout=timeout, what="model registry")
            self._db = self._shared.db
            try:
                if self._shared.refs == 1:  # first user in this process: no upload under way
                    self._blobs.remove_temporaries()
            except BaseException:
                release_shared(self._shared)
                raise
        self.mark_open()

    # -- helpers --------------------------------------------------------------------------

    def require_writable(self) -> None:
        """As :meth:`Handle.require_writable`, and refuse a forked child of the opener
        (:class:`~synarrow.errors.InvalidStateError`)."""
        super().require_writable()
        if self._shared is not None and not self._shared.in_this_process:
            raise InvalidStateError(
                f"model registry {self.path} was opened in process {self._shared.pid} "
                "(this is a forked child)",
                hint="open a new ModelRegistry in this process",
            )

    @staticmethod
    def _vkey(name: str, version: int) -> str:
        return f"models/{name}/versions/{version}"

    @staticmethod
    def _akey(name: str, alias: str) -> str:
        # Under versions/ (a part no model name may hold, so no other model's key), and
        # after '@', which no version number holds.
        return f"models/{name}/versions/@{alias}"

    def _alias_map(self, name: str) -> dict[str, int]:
        prefix = f"models/{name}/versions/@"
        out = {}
        for key in self._db.keys(prefix + "*"):
            alias = key[len(prefix) :]
            version = self._alias_target(key)
            if version is not None and ALIAS_PATTERN.fullmatch(alias):
                out[alias] = version
        return dict(sorted(out.items()))

    def _alias_target(self, key: str, text: object = None) -> int | None:
        if text is None:
            text = self._db.get(key)
        if text is None:
            return None
        try:
            if not isinstance(text, str):
                raise TypeError(f"a {type(text).__name__}, not JSON text")
            version = json.loads(text)["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"stored alias {key!r} is damaged: {exc}") from exc
        if version is not None and (type(version) is not int or version < 1):
            raise CorruptionError(f"stored alias {key!r} points at {version!r:.60}")
        return version  # type: ignore[no-any-return]

    def _with_aliases(self, info: ModelVersion, amap: Mapping[str, int]) -> ModelVersion:
        mine = tuple(a for a, v in amap.items() if v == info.version)
        return info if mine == info.aliases else dataclasses.replace(info, aliases=mine)

    def _model_known(self, name: str) -> bool:
        return self._db.exists(f"models/{name}/next_version")

    def _versions(self, name: str) -> list[ModelVersion]:
        prefix = f"models/{name}/versions/"
        out = []
        for key in self._db.keys(prefix + "*"):
            tail = key[len(prefix) :]
            if tail.isdigit():
                text = self._db.get(key)
                if isinstance(text, str):
                    out.append(ModelVersion.from_json(text, name=name, version=int(tail)))
        out.sort(key=lambda v: v.version)
        amap = self._alias_map(name)
        return [self._with_aliases(v, amap) for v in out] if amap else out

    def _require_model(self, name: str) -> None:
        check_name("model", name, "versions")
        if not self._model_known(name):
            raise NotFoundError(
                f"model {name!r} not found in {self.path}",
                hint="list the models with ModelRegistry.list_models()",
            )

    def _check_version(self, version: object) -> int:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgumentError(f"version must be an int >= 1, got {version!r}")
        return version

    # -- public API -----------------------------------------------------------------------

    def save_model(
        self,
        name: str,
        data: Source,
        metadata: Mapping[str, Any] | None = None,
        run_id: str | Run | None = None,
        *,
        experiments: Experiment | str | os.PathLike[str] | None = None,
    ) -> ModelVersion:
        """Store a new version of ``name``; returns its :class:`ModelVersion`.

        ``data``: bytes-like, a path to a file, or a binary file object; paths and files are
        streamed in chunks. ``metadata``: a JSON-serialisable mapping (strings, finite
        numbers, bools, None, lists, dicts), else :class:`~synarrow.InvalidValueError`.
        The new version is in stage ``"Development"`` and is durable on return.

        ``run_id``: the run that produced the model (a :class:`~synarrow.Run` or its id).
        The run's experiment, store path and data inputs are copied into the version's
        record (see :meth:`lineage`). A run id is looked up in the experiments open in this
        process, or in ``experiments`` (an :class:`~synarrow.Experiment` or a store path);
        one found in neither is refused with :class:`~synarrow.NotFoundError` (a lineage
        naming a run nobody can find would say nothing).

        >>> with exp.start_run("fit") as run:
        ...     run.log_params({"lr": 0.1})
        >>> reg.save_model("clf", b"weights", run_id=run.id).run_id == run.id
        True
        """
        self.require_writable()
        check_name("model", name, "versions")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise InvalidValueError(
                f"metadata must be a mapping (dict), got {type(metadata).__name__}"
            )
        meta = json.loads(to_json(f"metadata of model {name!r}", dict(metadata)))
        run: RunInfo | None = None
        inputs: tuple[DataInput, ...] = ()
        if run_id is not None:
            found, inputs = find_run(run_id, experiments)
            run = dataclasses.replace(found, status=None)  # the status changes: not stored
        elif experiments is not None:
            raise InvalidArgumentError("experiments= is only used with run_id=")
        checksum, size = self._blobs.put(data, f"model {name!r}")
        with self._lock, self._db.exclusive():
            counter = f"models/{name}/next_version"
            version = self._db.get(counter, 1)
            created = us_to_datetime(now_us())
            info = ModelVersion(
                version,
                checksum,
                size,
                "Development",
                created,
                meta,
                name,
                run_id=None if run is None else run.id,
                run=run,
                inputs=inputs,
            )
            self._db.append(self._vkey(name, version), info.to_json())
            self._db.append(counter, version + 1)
            self._db.sync()
        return info

    def get_version(self, name: str, version: int | str | None = None) -> ModelVersion:
        """The :class:`ModelVersion` of ``version`` (an int, a stage name, or the latest).

        A stage name picks the highest version in that stage.
        :class:`~synarrow.NotFoundError` if the model or version does not exist.
        """
        self.require_open()
        self._require_model(name)
        if version is None:
            versions = self._versions(name)
            if not versions:
                raise NotFoundError(f"model {name!r} has no versions left")
            return versions[-1]
        if isinstance(version, str):
            stage = normalize_stage(version)
            found = [v for v in self._versions(name) if v.stage == stage]
            if not found:
                raise NotFoundError(f"model {name!r} has no version in stage {stage}")
            return found[-1]
        self._check_version(version)
        text = self._db.get(self._vkey(name, version))
        if not isinstance(text, str):
            raise NotFoundError(
                f"model {name!r} has no version {version}",
                hint="list the versions with ModelRegistry.list_versions(name)",
            )
        info = ModelVersion.from_json(text, name=name, version=version)
        return self._with_aliases(info, self._alias_map(name))

    def load_model(
        self,
        name: str,
        version: int | str | None = None,
        *,
        alias: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> tuple[Any, ModelVersion]:
        """Read a version's bytes, verified against its SHA-256; returns ``(data, info)``.

        ``version``: an int, a stage name (``"Production"``) or ``None`` for the latest;
        or ``alias``: the version an alias points at (``alias="champion"``; not together with
        ``version``: :class:`~synarrow.InvalidArgumentError`).
        Without ``path`` ``data`` is ``bytes``; with ``path`` the bytes are streamed in chunks
        to that file (written under a temporary name, renamed when verified; not fsynced)
        and ``data`` is its :class:`~pathlib.Path`. Damaged, truncated or missing bytes raise
        :class:`~synarrow.ChecksumError` (a :class:`~synarrow.CorruptionError`).
        """
        info = self._resolve(name, version, alias)
        what = f"model {name!r} version {info.version}"
        if path is None:
            return self._blobs.read(info.checksum, info.size_bytes, what), info
        return self._blobs.copy_to(info.checksum, info.size_bytes, Path(path), what), info

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All live versions of ``name``, oldest first; NotFoundError for an unknown model."""
        self.require_open()
        self._require_model(name)
        return self._versions(name)

    def list_models(self) -> list[str]:
        """Names of every model ever saved here, sorted."""
        self.require_open()
        suffix = "/next_version"
        return sorted(k[len("models/") : -len(suffix)] for k in self._db.keys("models/*" + suffix))

    def set_stage(
        self, name: str, version: int, stage: str, *, archive_existing: bool = True
    ) -> ModelVersion:
        """Move a version to ``stage``; returns the updated :class:`ModelVersion`.

        Moving a version to Production moves the versions that were in Production to
        Archived (as MLflow does), unless ``archive_existing=False``. Stage names are
        case-insensitive; others raise :class:`~synarrow.InvalidValueError`.
        """
        self.require_writable()
        stage = normalize_stage(stage)
        self._check_version(version)
        with self._lock, self._db.exclusive():
            info = self.get_version(name, version)
            changed = dataclasses.replace(info, stage=stage)
            if stage == "Production" and archive_existing:
                for other in self._versions(name):
                    if other.stage == "Production" and other.version != version:
                        archived = dataclasses.replace(other, stage="Archived")
                        self._db.append(self._vkey(name, other.version), archived.to_json())
            if info.stage != stage:
                self._db.append(self._vkey(name, version), changed.to_json())
            self._db.sync()
        return changed

    def get_production(self, name: str) -> ModelVersion | None:
        """The version in Production (the highest if several), or ``None`` if there is none.

        :class:`~synarrow.NotFoundError` for an unknown model.
        """
        self.require_open()
        self._require_model(name)
        found = [v for v in self._versions(name) if v.stage == "Production"]
        return found[-1] if found else None

    def stage_history(self, name: str, version: int) -> list[tuple[dt.datetime, str]]:
        """Every stage the version has been in, with the time of each change, oldest first."""
        self.get_version(name, version)
        table = self._db.get_history(self._vkey(name, version))
        times = table.column("ts").to_pylist()
        return [
            (t, json.loads(s)["stage"]) for t, s in zip(times, table.column("value").to_pylist())
        ]

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version: its metadata, and its bytes unless another version shares them.

        Its number is not reused. :class:`~synarrow.NotFoundError` if it does not exist.
        """
        self.require_writable()
        with self._lock, self._db.exclusive():
            info = self.get_version(name, self._check_version(version))
            if info.aliases:
                listed = ", ".join(repr(a) for a in info.aliases)
                raise InvalidStateError(
                    f"model {name!r} version {version} is what alias {listed} points at; "
                    "it was not deleted",
                    hint="set_alias() the alias to another version or delete_alias() it first",
                )
            self._blobs.path_of(info.checksum)  # a crafted checksum: refuse before any change
            self._db.delete(self._vkey(name, version))
            self._db.sync()
            still_used = any(
                v.checksum == info.checksum
                for model in self.list_models()
                for v in self._versions(model)
            )
            if not still_used:
                self._blobs.remove(info.checksum)

    def _resolve(self, name: str, version: int | str | None, alias: str | None) -> ModelVersion:
        if alias is None:
            return self.get_version(name, version)
        if version is not None:
            raise InvalidArgumentError(
                f"give either version= or alias= for model {name!r}, not both "
                f"(got version={version!r}, alias={alias!r})"
            )
        return self.get_by_alias(name, alias)

    # -- aliases ----------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``alias`` (``"champion"``) at ``version``, moving it from any other version;
        durable on return. Returns the version (its ``aliases`` include ``alias``).

        :class:`~synarrow.NotFoundError` if the model or version does not exist;
        :class:`~synarrow.InvalidArgumentError` for an alias that is not a safe name
        (:func:`check_alias`).

        >>> v = reg.save_model("clf", b"weights")
        >>> reg.set_alias("clf", "champion", v.version).aliases
        ('champion',)
        >>> reg.load_model("clf", alias="champion")[0]
        b'weights'
        """
        self.require_writable()
        check_alias(alias)
        self._check_version(version)
        with self._lock, self._db.exclusive():
            self.get_version(name, version)
            for other in self._alias_map(name):
                if other != alias and other.lower() == alias.lower():
                    raise InvalidArgumentError(
                        f"model {name!r} has the alias {other!r} already; aliases may not "
                        f"differ only in case ({alias!r})",
                        hint=f"move {other!r} with set_alias(name, {other!r}, version)",
                    )
            key = self._akey(name, alias)
            if self._alias_target(key) != version:
                self._db.append(key, json.dumps({"version": version}))
                self._db.sync()
            return self.get_version(name, version)

    def get_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The :class:`ModelVersion` that ``alias`` points at; :class:`~synarrow.NotFoundError`
        for an unknown model or an alias that is not set."""
        self.require_open()
        self._require_model(name)
        check_alias(alias)
        version = self._alias_target(self._akey(name, alias))
        if version is None:
            known = ", ".join(self._alias_map(name)) or "none"
            raise NotFoundError(
                f"model {name!r} has no alias {alias!r} (aliases: {known})",
                hint="set one with ModelRegistry.set_alias(name, alias, version)",
            )
        return self.get_version(name, version)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``; durable on return (its history stays in :meth:`alias_history`).
        :class:`~synarrow.NotFoundError` if it is not set."""
        self.require_writable()
        with self._lock, self._db.exclusive():
            self.get_by_alias(name, alias)
            self._db.append(self._akey(name, alias), json.dumps({"version": None}))
            self._db.sync()

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` and the version each points at, sorted by alias."""
        self.require_open()
        self._require_model(name)
        return self._alias_map(name)

    def alias_history(self, name: str, alias: str) -> list[tuple[dt.datetime, int | None]]:
        """Every version ``alias`` has pointed at, with the time of each change, oldest
        first (``None``: deleted). :class:`~synarrow.NotFoundError` if it was never set."""
        self.require_open()
        self._require_model(name)
        key = self._akey(name, check_alias(alias))
        if not self._db.exists(key):
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        table = self._db.get_history(key)
        times = table.column("ts").to_pylist()
        return [
            (t, self._alias_target(key, text))
            for t, text in zip(times, table.column("value").to_pylist())
        ]

    # -- lineage ----------------------------------------------------------------------------

    def lineage(
        self,
        name: str,
        version: int | str | None = None,
        *,
        alias: str | None = None,
        experiments: Experiment | str | os.PathLike[str] | None = None,
    ) -> Lineage:
        """Model -> run -> data snapshots of a version (chosen as in :meth:`load_model`).

        The run and inputs come from the version's own record (copied at save time), so
        they survive the experiment store being moved or deleted. Each input is checked
        against its database now (``verified``: the tag still exists with the same
        fingerprint), and the run's ``status`` is read from its store (``experiments``: where
        it is now, when it has moved; default: the recorded path), ``None`` if unreachable.

        >>> _ = db.snapshot("train-v2")
        >>> with exp.start_run("fit") as run:
        ...     _ = run.log_input(db, "train-v2")
        >>> v = reg.save_model("clf", b"weights", run_id=run)
        >>> lin = reg.lineage("clf", v.version)
        >>> lin.run.status, [i.tag for i in lin.inputs], lin.verified
        ('completed', ['train-v2'], True)
        """
        info = self._resolve(name, version, alias)
        if info.run_id is None:
            return Lineage(info, None, ())
        run = info.run
        assert run is not None  # from_json refuses a run_id without its run
        try:
            now, _ = find_run(run.id, experiments if experiments is not None else run.path)
            status = now.status
        except (SynaError, OSError):
            status = None
        run = dataclasses.replace(run, status=status)
        return Lineage(info, run, tuple(i.checked() for i in info.inputs))

    def verify(self, name: str | None = None) -> list[tuple[str, int, str]]:
        """Check every version's bytes (of one model, or all); returns the damaged ones.

        Each problem is ``(name, version, reason)``; an empty list means all is well.
        """
        self.require_open()
        problems = []
        for model in [name] if name is not None else self.list_models():
            for v in self.list_versions(model):
                try:
                    self._blobs.verify(v.checksum, v.size_bytes, f"model {model!r} v{v.version}")
                except CorruptionError as exc:
                    problems.append((model, v.version, exc.message))
        return problems

    @property
    def db(self) -> SynaDB:
        """The underlying :class:`~synarrow.SynaDB` (for SQL over the version metadata)."""
        return self._db

    def release(self) -> None:
        """Release the database (the shared writer closes with its last user)."""
        if self._shared is not None:
            release_shared(self._shared)
        else:
            self._db.close()

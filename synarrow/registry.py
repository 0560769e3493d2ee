"""``ModelRegistry``: versioned model files with SHA-256 checksums and stages.

Layout of a registry directory (it is also a plain :class:`~synarrow.SynaDB`)::

    models.db/
      SYNARROW, log/, columnar/ ...   the SynaDB: one JSON entry per version and stage change
      blobs/<sha256>                  the model bytes, one immutable file per distinct content

Keys in the SynaDB: ``models/<name>/versions/<n>`` (the version's JSON; every stage change
appends a new entry, so the key's history is the audit trail) and
``models/<name>/next_version`` (version numbers are never reused, as in MLflow).

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
)
from synarrow.handle import Handle
from synarrow.records import check_name, datetime_to_us, now_us, to_json, us_to_datetime
from synarrow.shared_writer import SharedWriter, open_shared, release_shared

__all__ = ["STAGES", "ModelRegistry", "ModelVersion", "normalize_stage"]

STAGES = ("Development", "Staging", "Production", "Archived")


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
    """

    version: int
    checksum: str
    size_bytes: int
    stage: str
    created_at: dt.datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def to_json(self) -> str:
        """The JSON record stored for this version (one entry per save and stage change)."""
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "checksum": self.checksum,
                "size_bytes": self.size_bytes,
                "stage": self.stage,
                "created_us": datetime_to_us(self.created_at),
                "metadata": self.metadata,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, *, name: str, version: int) -> ModelVersion:
        """Parse a stored version record; it must be the record of ``name`` ``version``."""
        try:
            d = json.loads(text)
            info = cls(
                version=d["version"],
                checksum=d["checksum"],
                size_bytes=d["size_bytes"],
                stage=d["stage"],
                created_at=us_to_datetime(d["created_us"]),
                metadata=d.get("metadata", {}),
                name=d["name"],
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
        return out

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
        self, name: str, data: Source, metadata: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        """Store a new version of ``name``; returns its :class:`ModelVersion`.

        ``data``: bytes-like, a path to a file, or a binary file object; paths and files are
        streamed in chunks. ``metadata``: a JSON-serialisable mapping (strings, finite
        numbers, bools, None, lists, dicts), else :class:`~synarrow.InvalidValueError`.
        The new version is in stage ``"Development"`` and is durable on return.
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
        checksum, size = self._blobs.put(data, f"model {name!r}")
        with self._lock:
            counter = f"models/{name}/next_version"
            version = self._db.get(counter, 1)
            created = us_to_datetime(now_us())
            info = ModelVersion(version, checksum, size, "Development", created, meta, name)
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
        return ModelVersion.from_json(text, name=name, version=version)

    def load_model(
        self,
        name: str,
        version: int | str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> tuple[Any, ModelVersion]:
        """Read a version's bytes, verified against its SHA-256; returns ``(data, info)``.

        ``version``: an int, a stage name (``"Production"``) or ``None`` for the latest.
        Without ``path`` ``data`` is ``bytes``; with ``path`` the bytes are streamed in chunks
        to that file (written under a temporary name, renamed when verified; not fsynced)
        and ``data`` is its :class:`~pathlib.Path`. Damaged, truncated or missing bytes raise
        :class:`~synarrow.ChecksumError` (a :class:`~synarrow.CorruptionError`).
        """
        info = self.get_version(name, version)
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
        with self._lock:
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
        with self._lock:
            info = self.get_version(name, self._check_version(version))
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

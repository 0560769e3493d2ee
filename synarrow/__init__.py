"""synarrow: an Apache Arrow-native embedded analytical store for Python.

>>> import synarrow
>>> db = synarrow.SynaDB("my_data.db")
>>> db.append("temperature", 23.5)              # the entry's sequence number
0
>>> db.append("temperature", 24.0)
1
>>> db.get("temperature"), db.get_history_floats("temperature")
(24.0, array([23.5, 24. ]))
>>> db.sql("SELECT count(*) AS n FROM history").to_pylist()
[{'n': 2}]
>>> db.close()

The public names are listed in ``__all__``; the vector, tensor, experiment and registry
classes load on first use, so ``import synarrow`` stays light.
"""

from __future__ import annotations

from typing import Any

from synarrow.config import DbConfig
from synarrow.db import SynaDB, open
from synarrow.errors import (
    ChecksumError,
    CompactionError,
    ConfigError,
    CorruptionError,
    DatabaseClosedError,
    DatabaseLockedError,
    DependencyMissingError,
    ExportError,
    GPUUnavailableError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidPathError,
    InvalidStateError,
    InvalidValueError,
    KeyNotFoundError,
    NotFoundError,
    QueryTimeoutError,
    ReadOnlyError,
    SnapshotExistsError,
    SnapshotInUseError,
    SnapshotNotFoundError,
    StorageFullError,
    SynaError,
    TypeMismatchError,
)
from synarrow.log.format import Atom

__version__ = "0.1.0"

# Heavier parts load on first use, so `import synarrow` stays fast.
_LAZY = {
    "VectorStore": "synarrow.vector",
    "SearchResult": "synarrow.vector",
    "SearchPlan": "synarrow.vector",
    "TensorEngine": "synarrow.tensor",
    "Experiment": "synarrow.experiment",
    "Run": "synarrow.experiment",
    "ModelRegistry": "synarrow.registry",
    "ModelVersion": "synarrow.registry",
    "Lineage": "synarrow.registry",
    "DataInput": "synarrow.lineage",
    "RunInfo": "synarrow.lineage",
    "SQLError": "synarrow.sql",
    "SnapshotInfo": "synarrow.snapshots",
    "SnapshotDiff": "synarrow.snapshots",
    "KeyChange": "synarrow.snapshots",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if name == "gpu":
            import importlib

            return importlib.import_module("synarrow.gpu")
        raise AttributeError(f"module 'synarrow' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"gpu"})


__all__ = [  # noqa: RUF022 - grouped: core names, then the lazily loaded ones
    "Atom",
    "ChecksumError",
    "CompactionError",
    "ConfigError",
    "CorruptionError",
    "DatabaseClosedError",
    "DatabaseLockedError",
    "DbConfig",
    "DependencyMissingError",
    "ExportError",
    "GPUUnavailableError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidPathError",
    "InvalidStateError",
    "InvalidValueError",
    "KeyNotFoundError",
    "NotFoundError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "SnapshotExistsError",
    "SnapshotInUseError",
    "SnapshotNotFoundError",
    "StorageFullError",
    "SynaDB",
    "SynaError",
    "TypeMismatchError",
    "__version__",
    "open",
    # loaded on first use
    "ModelRegistry",
    "ModelVersion",
    "Experiment",
    "Run",
    "SQLError",
    "SearchPlan",
    "SearchResult",
    "TensorEngine",
    "VectorStore",
    "SnapshotInfo",
    "SnapshotDiff",
    "KeyChange",
    "Lineage",
    "DataInput",
    "RunInfo",
]

"""The files a vector store keeps in ``<database>/vector_index/``.

``config.json``
    The settings the store was created with (dimensions, metric, precision, HNSW build
    parameters). Written once; a reopen with other dimensions or metric is refused.
``state.json``
    The committed index checkpoint: its generation, the database position (sequence number
    of the next log entry) it covers, the next free label, and the size and CRC32 of the two
    files below. Replaced atomically; whatever it names is the checkpoint.
``index-<generation>.usearch``, ``keys-<generation>.arrow`` and ``meta-<generation>.arrow``
    The usearch graph, the key/label map (key, label, fingerprint, insert time) and the
    documents' metadata records (:mod:`synarrow.vector_meta`; only when some document has
    metadata), as uncompressed Arrow IPC files, of that checkpoint. Files of other
    generations are leftovers and are removed. ``state.json`` format 1 (before metadata)
    is read as a checkpoint without metadata and without insert times.

A checkpoint whose files are missing or fail their CRC is treated as absent: the index is
rebuilt from the log, which is always the source of truth. The readers here say so with a
plain ``ValueError``, which the store catches to rebuild (it never reaches the user); a
:class:`~synarrow.errors.CorruptionError` (a planted link, a crafted name) is not caught.

Every file is opened without following symlinks, and the file names in ``state.json`` must
be the ones synarrow writes for a generation (``index-<n>.usearch``, ``keys-<n>.arrow``): a
planted link or a crafted name (``../../victim``) raises
:class:`~synarrow.errors.CorruptionError` before any file is opened by that name.
Temporaries get unique names created exclusively, so nothing is written through a link.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from synarrow.errors import ConfigError, CorruptionError
from synarrow.fileio import (
    DurableTemp,
    fd_path,
    fsync_directory,
    open_fd,
    read_bytes,
    remove_file,
    require_directory,
    require_name,
    temporary_name,
    write_atomic,
)
from synarrow.vector_keys import KeyMap
from synarrow.vector_meta import MetadataColumns

__all__ = [
    "CONFIG_NAME",
    "DIRNAME",
    "INDEX_NAME",
    "KEYS_NAME",
    "MAX_DIMS",
    "META_NAME",
    "METRICS",
    "MIN_DIMS",
    "PRECISIONS",
    "STATE_NAME",
    "Checkpoint",
    "StoreConfig",
    "checked_file",
    "make_directory",
    "normalize_metric",
    "read_checkpoint",
    "read_config",
    "read_keymap",
    "read_metadata",
    "remove_leftovers",
    "write_checkpoint",
    "write_config",
]

DIRNAME = "vector_index"
CONFIG_NAME = "config.json"
STATE_NAME = "state.json"
FORMAT = 2
INDEX_NAME = re.compile(r"index-[1-9][0-9]*\.usearch")
KEYS_NAME = re.compile(r"keys-[1-9][0-9]*\.arrow")
META_NAME = re.compile(r"meta-[1-9][0-9]*\.arrow")
# Far larger than any settings or state file; a larger one is damaged or crafted.
_MAX_JSON_BYTES = 1 << 20

METRICS = {"cosine": "cos", "euclidean": "l2sq", "dot": "ip"}
METRIC_ALIASES = {
    "cos": "cosine",
    "l2": "euclidean",
    "l2sq": "euclidean",
    "ip": "dot",
    "dot_product": "dot",
    "inner_product": "dot",
}
PRECISIONS = ("f32", "f16", "bf16", "i8")
MIN_DIMS, MAX_DIMS = 2, 8192
DEFAULTS: dict[str, Any] = {
    "metric": "cosine",
    "precision": "f32",
    "connectivity": 16,
    "expansion_add": 128,
    "expansion_search": 96,
}


def _int_in(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{name} must be an int, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def normalize_metric(metric: object) -> str:
    """``"cosine"``, ``"euclidean"`` or ``"dot"`` from a name or common alias."""
    if not isinstance(metric, str):
        raise ConfigError(f"metric must be a str, got {metric!r}")
    name = metric.lower()
    name = METRIC_ALIASES.get(name, name)
    if name not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}", hint="use 'cosine', 'euclidean' or 'dot'")
    return name


@dataclass(frozen=True)
class StoreConfig:
    """How a vector store's index is built; saved in ``config.json`` when it is created."""

    dimensions: int
    metric: str = DEFAULTS["metric"]
    precision: str = DEFAULTS["precision"]
    connectivity: int = DEFAULTS["connectivity"]
    expansion_add: int = DEFAULTS["expansion_add"]
    expansion_search: int = DEFAULTS["expansion_search"]

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "dimensions", _int_in("dimensions", self.dimensions, MIN_DIMS, MAX_DIMS)
        )
        object.__setattr__(self, "metric", normalize_metric(self.metric))
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        for name in ("connectivity", "expansion_add", "expansion_search"):
            object.__setattr__(self, name, _int_in(name, getattr(self, name), 2, 4096))

    @property
    def usearch_metric(self) -> str:
        """The metric's name in usearch."""
        return METRICS[self.metric]

    def to_json(self) -> str:
        """The JSON stored in ``config.json``."""
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path) -> StoreConfig:
        """Parse ``config.json``; a damaged file is a :class:`ConfigError`."""
        try:
            data = json.loads(text)
            if data.pop("format", FORMAT) > FORMAT:
                raise ConfigError(f"{path} was written by a newer synarrow")
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(
                f"vector store settings {path} are damaged: {exc}",
                hint="restore the file, or delete it and open with the original dimensions",
            ) from exc


def _read_text(path: Path, what: str) -> str:
    raw = read_bytes(path, max_size=_MAX_JSON_BYTES, what=what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptionError(f"{what} {path} is not UTF-8 text: {exc}") from exc


def read_config(directory: Path) -> StoreConfig | None:
    """The saved settings, or ``None`` for a store never created here."""
    path = directory / CONFIG_NAME
    if not require_directory(directory, what="vector index directory"):
        return None
    try:
        text = _read_text(path, "vector store settings")
    except FileNotFoundError:
        return None
    return StoreConfig.from_json(text, path)


def make_directory(directory: Path) -> None:
    """Create the vector index directory (refusing a symlink in its place)."""
    if not require_directory(directory, what="vector index directory"):
        directory.mkdir(exist_ok=True)


def write_config(directory: Path, config: StoreConfig) -> None:
    """Save the settings durably (creating the directory)."""
    make_directory(directory)
    write_atomic(directory / CONFIG_NAME, config.to_json().encode())


@dataclass
class Checkpoint:
    """What ``state.json`` says: a saved index and the database position it covers."""

    generation: int
    position: int
    next_label: int
    count: int
    index_file: str
    index_bytes: int
    index_crc: int
    keys_file: str
    keys_bytes: int
    keys_crc: int
    meta_file: str | None = None
    meta_bytes: int = 0
    meta_crc: int = 0
    dead: int = 0
    """Vectors removed from (or replaced in) the index since it was built: space it holds."""


def read_checkpoint(directory: Path) -> Checkpoint:
    """The committed checkpoint; ``ValueError`` if there is none usable."""
    path = directory / STATE_NAME
    try:
        data = json.loads(_read_text(path, "vector index state"))
        if data.pop("format") not in (1, FORMAT):
            raise ValueError("unknown format")
        state = Checkpoint(**data)
    except CorruptionError:
        raise  # a planted link or an oversized file: not ours, refuse
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    require_name(state.index_file, INDEX_NAME, what=f"{path}: index file")
    require_name(state.keys_file, KEYS_NAME, what=f"{path}: key file")
    if state.meta_file is not None:
        require_name(state.meta_file, META_NAME, what=f"{path}: metadata file")
    for name in ("generation", "position", "next_label", "count", "meta_bytes", "dead"):
        value = getattr(state, name)
        if type(value) is not int or value < 0:
            raise ValueError(f"{path}: {name} is {value!r}")
    return state


def _crc_of_fd(fd: int) -> tuple[int, int]:
    crc = 0
    size = 0
    offset = 0
    while chunk := os.pread(fd, 8 << 20, offset):
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
        offset += len(chunk)
    return size, crc


def _crc_of_file(path: Path) -> tuple[int, int]:
    fd = open_fd(path, os.O_RDONLY, what="vector index file")
    try:
        return _crc_of_fd(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def checked_file(directory: Path, name: str, size: int, crc: int) -> Iterator[str]:
    """Open a checkpoint file (no-follow), check its size and CRC32, and yield a path that
    reaches that very file (``/proc/self/fd/N``) for a library that only takes a path.

    What the library then reads is the file that was checked, even if a link is swapped in
    at the name meanwhile.
    """
    path = directory / name
    try:
        fd = open_fd(path, os.O_RDONLY, what="vector index file")
    except CorruptionError:
        raise
    except OSError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    try:
        actual = os.fstat(fd).st_size
        if actual != size:
            raise ValueError(f"{path} has {actual} bytes, expected {size}")
        if _crc_of_fd(fd) != (size, crc):
            raise ValueError(f"{path} fails its CRC32 check")
        yield fd_path(fd) or str(path)
    finally:
        os.close(fd)


def _read_table(path: Path, size: int, crc: int, what: str) -> pa.Table:
    """An Arrow IPC file of a checkpoint, checked (size, CRC32, full validation)."""
    try:
        data = read_bytes(path, max_size=size, what=what)
    except CorruptionError as exc:
        if os.path.islink(path):
            raise
        raise ValueError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if len(data) != size or zlib.crc32(data) != crc:
        raise ValueError(f"{path} fails its size or CRC32 check")
    try:
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        table.validate(full=True)  # offsets and lengths, before anything reads the values
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return table


def read_metadata(directory: Path, state: Checkpoint) -> MetadataColumns:
    """The metadata records of a checkpoint (none when it has no file); ``ValueError`` on
    any problem."""
    if state.meta_file is None:
        return MetadataColumns()
    path = directory / state.meta_file
    table = _read_table(path, state.meta_bytes, state.meta_crc, "vector metadata")
    try:
        return MetadataColumns.from_arrow(table)
    except (ValueError, TypeError, KeyError, IndexError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def read_keymap(directory: Path, state: Checkpoint) -> KeyMap:
    """The key map of a checkpoint (checked); ``ValueError`` on any problem."""
    path = directory / state.keys_file
    table = _read_table(path, state.keys_bytes, state.keys_crc, "vector key map")
    try:
        labels = table.column("label")
        if table.column("key").null_count or labels.null_count:
            raise ValueError("the key map holds nulls")
        if len(labels) and labels.to_numpy().min() < 0:
            raise ValueError("the key map holds a negative label")
        keymap = KeyMap.from_arrow(table, state.next_label)
    except (ValueError, TypeError, KeyError, IndexError, OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if len(keymap) != state.count:
        raise ValueError(f"{path} holds {len(keymap)} keys, expected {state.count}")
    return keymap


def _ipc_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def write_checkpoint(
    directory: Path,
    index: Any,
    keymap: KeyMap,
    position: int,
    previous: Checkpoint | None,
    *,
    metadata: MetadataColumns | None = None,
    dead: int = 0,
) -> Checkpoint:
    """Save ``index``, ``keymap`` and ``metadata`` as a new generation and commit it;
    returns its state.

    Each file is written to a temp name, fsynced and renamed before ``state.json`` names it,
    so a crash at any point leaves the previous checkpoint (or none) committed.
    """
    make_directory(directory)
    generation = (previous.generation if previous else 0) + 1
    index_name = f"index-{generation}.usearch"
    keys_name = f"keys-{generation}.arrow"

    # usearch opens the name itself: reserve a fresh unique one exclusively first, so no
    # link can be waiting there to be written through.
    with DurableTemp(temporary_name(directory / index_name)) as tmp:
        # Through the descriptor: a link swapped in at the name is never written through.
        index.save(fd_path(tmp.fd) or str(tmp.path))
        tmp.commit(directory / index_name)
    index_bytes, index_crc = _crc_of_file(directory / index_name)

    keys_data = _ipc_file(keymap.to_arrow())
    write_atomic(directory / keys_name, keys_data)
    meta_name = None
    meta_data = b""
    if metadata is not None and len(metadata):
        meta_name = f"meta-{generation}.arrow"
        meta_data = _ipc_file(metadata.to_arrow())
        write_atomic(directory / meta_name, meta_data)

    state = Checkpoint(
        generation=generation,
        position=position,
        next_label=keymap.next_label,
        count=len(keymap),
        index_file=index_name,
        index_bytes=index_bytes,
        index_crc=index_crc,
        keys_file=keys_name,
        keys_bytes=len(keys_data),
        keys_crc=zlib.crc32(keys_data),
        meta_file=meta_name,
        meta_bytes=len(meta_data),
        meta_crc=zlib.crc32(meta_data),
        dead=dead,
    )
    text = json.dumps({"format": FORMAT, **asdict(state)}, indent=1)
    write_atomic(directory / STATE_NAME, text.encode())
    remove_leftovers(directory, state)
    return state


def remove_leftovers(directory: Path, state: Checkpoint | None) -> None:
    """Delete index and key files that the committed checkpoint does not name."""
    keep = {state.index_file, state.keys_file, state.meta_file} if state else set()
    removed = False
    for f in directory.iterdir():
        leftover = f.name.startswith(
            ("index-", "keys-", "meta-", ".index-", ".keys-", ".meta-", ".state.json.")
        )
        if leftover and f.name not in keep:
            remove_file(f)  # a link is removed itself, never its target
            removed = True
    if removed:
        fsync_directory(directory)

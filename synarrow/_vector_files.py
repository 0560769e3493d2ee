"""The files a vector store keeps in ``<database>/vector_index/``.

``config.json``
    The settings the store was created with (dimensions, metric, precision, HNSW build
    parameters). Written once; a reopen with other dimensions or metric is refused.
``state.json``
    The committed index checkpoint: its generation, the database position (sequence number
    of the next log entry) it covers, the next free label, and the size and CRC32 of the two
    files below. Replaced atomically; whatever it names is the checkpoint.
``index-<generation>.usearch`` and ``keys-<generation>.arrow``
    The usearch graph and the key/label map (an uncompressed Arrow IPC file) of that
    checkpoint. Files of other generations are leftovers and are removed.

A checkpoint whose files are missing or fail their CRC is treated as absent: the index is
rebuilt from the log, which is always the source of truth.
"""

from __future__ import annotations

import json
import operator
import os
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from synarrow._vector_keys import KeyMap
from synarrow.columnar.manifest import write_file_durably
from synarrow.errors import ConfigError
from synarrow.log.writer import fsync_directory

DIRNAME = "vector_index"
CONFIG_NAME = "config.json"
STATE_NAME = "state.json"
FORMAT = 1

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


def read_config(directory: Path) -> StoreConfig | None:
    """The saved settings, or ``None`` for a store never created here."""
    path = directory / CONFIG_NAME
    if not path.exists():
        return None
    return StoreConfig.from_json(path.read_text(), path)


def write_config(directory: Path, config: StoreConfig) -> None:
    """Save the settings durably (creating the directory)."""
    directory.mkdir(exist_ok=True)
    write_file_durably(directory / CONFIG_NAME, config.to_json().encode())


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


class DamagedCheckpoint(Exception):
    """The checkpoint is missing, unreadable or fails a check (the caller rebuilds)."""


def read_checkpoint(directory: Path) -> Checkpoint:
    """The committed checkpoint; :class:`DamagedCheckpoint` if there is none usable."""
    path = directory / STATE_NAME
    try:
        data = json.loads(path.read_text())
        if data.pop("format") != FORMAT:
            raise DamagedCheckpoint(f"{path}: unknown format")
        return Checkpoint(**data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DamagedCheckpoint(f"{path}: {exc}") from exc


def _crc_of_file(path: Path) -> tuple[int, int]:
    crc = 0
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def check_file(directory: Path, name: str, size: int, crc: int) -> Path:
    """The path of a checkpoint file, after checking its size and CRC32."""
    path = directory / name
    try:
        if path.stat().st_size != size:
            raise DamagedCheckpoint(f"{path} has {path.stat().st_size} bytes, expected {size}")
        if _crc_of_file(path) != (size, crc):
            raise DamagedCheckpoint(f"{path} fails its CRC32 check")
    except OSError as exc:
        raise DamagedCheckpoint(f"{path}: {exc}") from exc
    return path


def read_keymap(directory: Path, state: Checkpoint) -> KeyMap:
    """The key map of a checkpoint (checked); :class:`DamagedCheckpoint` on any problem."""
    path = check_file(directory, state.keys_file, state.keys_bytes, state.keys_crc)
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        keymap = KeyMap.from_arrow(table, state.next_label)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DamagedCheckpoint(f"{path}: {exc}") from exc
    if len(keymap) != state.count:
        raise DamagedCheckpoint(f"{path} holds {len(keymap)} keys, expected {state.count}")
    return keymap


def write_checkpoint(
    directory: Path, index: Any, keymap: KeyMap, position: int, previous: Checkpoint | None
) -> Checkpoint:
    """Save ``index`` and ``keymap`` as a new generation and commit it; returns its state.

    Each file is written to a temp name, fsynced and renamed before ``state.json`` names it,
    so a crash at any point leaves the previous checkpoint (or none) committed.
    """
    directory.mkdir(exist_ok=True)
    generation = (previous.generation if previous else 0) + 1
    index_name = f"index-{generation}.usearch"
    keys_name = f"keys-{generation}.arrow"

    tmp = directory / (index_name + ".tmp")
    index.save(str(tmp))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / index_name)
    index_bytes, index_crc = _crc_of_file(directory / index_name)

    table = keymap.to_arrow()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    keys_data = sink.getvalue().to_pybytes()
    write_file_durably(directory / keys_name, keys_data)

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
    )
    text = json.dumps({"format": FORMAT, **asdict(state)}, indent=1)
    write_file_durably(directory / STATE_NAME, text.encode())
    remove_leftovers(directory, state)
    return state


def remove_leftovers(directory: Path, state: Checkpoint | None) -> None:
    """Delete index and key files that the committed checkpoint does not name."""
    keep = {state.index_file, state.keys_file} if state else set()
    removed = False
    for f in directory.iterdir():
        if (f.name.startswith(("index-", "keys-"))) and f.name not in keep:
            f.unlink(missing_ok=True)
            removed = True
    if removed:
        fsync_directory(directory)

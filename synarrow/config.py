"""Database settings: a frozen, self-validating dataclass saved inside the database.

A database remembers the settings it was created with (``config.json`` in its directory).
Opening it again without a config uses the stored settings; opening it with a different
config uses the new one from then on and stores it (every log entry describes its own
encoding, so no setting makes old data unreadable). A handle may also override settings for
itself only (``SynaDB(path, sync_on_write=False)``): those are never stored, so a later
plain ``SynaDB(path)`` keeps the database's own durability. :func:`choose` is the one place
that decides which settings a handle uses and what is written back.

``config.json`` is read without following symlinks and replaced atomically through a
uniquely named temporary created exclusively (:func:`read_stored`, :func:`write_stored`), so
a link planted at either name is refused, never written through.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synarrow.errors import ConfigError, InvalidArgumentError
from synarrow.fileio import read_bytes, write_atomic

__all__ = [
    "CONFIG_NAME",
    "DUPLICATES",
    "WRITERS",
    "DbConfig",
    "check_request",
    "choose",
    "read_stored",
    "stored_with",
    "write_stored",
    "writers_of",
]

#: The settings file inside a database directory.
CONFIG_NAME = "config.json"
# Far more than any settings file; a larger one is damaged or crafted.
_MAX_CONFIG_BYTES = 1 << 20

_COMPRESSIONS = (None, "lz4", "zstd")
_VERIFY = ("first-read", "open", "never")
#: Who may write at once (``DbConfig.writers``).
WRITERS = ("single", "many")
#: The policies for entries of one key with equal timestamps (``DbConfig.duplicates``).
DUPLICATES = ("keep_all", "keep_last", "keep_first")


@dataclass(frozen=True)
class DbConfig:
    """How a database writes, syncs and compacts.

    Attributes:
        sync_on_write: fsync before ``append`` returns, so an acknowledged value survives a
            power loss. When false, writes are buffered (up to ``write_buffer_bytes``) and
            ``flush()`` (to the OS), ``sync()`` or ``close()`` (to the disk) make them durable.
            Concurrent durable writers share fsyncs (group commit).
        compression: ``"lz4"`` to LZ4-compress log values larger than
            ``compression_threshold`` bytes when that saves space, or ``None``.
        compression_threshold: values at least this large (bytes) are tried with LZ4.
        delta: delta-encode consecutive numbers of a key in the log (bit-exact XOR for floats,
            wrapping difference for ints), so a slowly changing series takes fewer bytes.
        auto_compact: fold the log into columnar Arrow files automatically when the log
            holds more than ``compact_threshold_bytes``.
        compact_threshold_bytes: log size that triggers automatic compaction.
        columnar_compression: ``None`` (default) keeps columnar files uncompressed, so history
            reads are zero-copy views of the memory-mapped files; ``"lz4"`` or ``"zstd"``
            make them smaller but every read decompresses into new memory.
        max_log_file_size: a log segment is closed and a new one started past this size.
            One batch entry holds at most this many value bytes (kept within 64 MiB..1 GiB),
            so a batch up to that size reads back from the log as one contiguous view. It
            also bounds the work of an open: a segment larger than this plus one such entry
            is verified by streaming and only its verified prefix is read.
        write_buffer_bytes: buffered (non-sync) writes are handed to the OS past this size.
        verify: when the checksums of columnar data are verified. ``"first-read"``
            (default): each record batch the first time this handle reads it, then never
            again (later reads stay zero-copy and free); ``"open"``: every batch when the
            database is opened (the open reads all columnar data); ``"never"``: not on
            reads (compaction and ``synarrow check`` still verify). Whatever the policy,
            the manifest, key index and file footers are verified at open and every batch's
            structure is checked before use, so damage never crashes the process.
            See docs/FORMAT.md.
        duplicates: what reads, SQL and compaction keep of entries of one key with equal
            timestamps: ``"keep_all"`` (default: every entry, in arrival order),
            ``"keep_last"`` (the last one written, so a resent batch replaces the first) or
            ``"keep_first"`` (the first one written). Compaction stores only what reads see.
        refresh_interval: how stale a read-only handle may get, in seconds: its reads check
            at most this often whether the writer has written or compacted since and, if so,
            refresh it (``SynaDB.refresh()``). ``0``: check on every read; ``None``: only on
            an explicit ``refresh()``. Snapshot handles never check, and neither do
            writers under ``writers="single"``.
        writers: ``"many"`` (default): any number of writer handles, in one process or
            several, append to the same log one at a time under a short OS lock; each
            sees the others' entries before it writes and, like a read-only handle, on
            reads at most every ``refresh_interval`` seconds. ``"single"``: one writer
            handle at a time; a second one (in any process) is refused with
            :class:`~synarrow.errors.DatabaseLockedError`. See docs/FORMAT.md ("Several
            writers").
    """

    sync_on_write: bool = True
    compression: str | None = "lz4"
    compression_threshold: int = 1024
    delta: bool = True
    auto_compact: bool = True
    compact_threshold_bytes: int = 64 * 1024 * 1024
    columnar_compression: str | None = None
    max_log_file_size: int = 256 * 1024 * 1024
    write_buffer_bytes: int = 1024 * 1024
    verify: str = "first-read"
    duplicates: str = "keep_all"
    refresh_interval: float | None = 0.1
    writers: str = "many"

    def __post_init__(self) -> None:
        for name in ("sync_on_write", "delta", "auto_compact"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"DbConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.compression not in (None, "lz4"):
            raise ConfigError(
                f"DbConfig.compression must be None or 'lz4', got {self.compression!r}"
            )
        if self.columnar_compression not in _COMPRESSIONS:
            raise ConfigError(
                "DbConfig.columnar_compression must be None, 'lz4' or 'zstd', "
                f"got {self.columnar_compression!r}"
            )
        if self.verify not in _VERIFY:
            raise ConfigError(
                f"DbConfig.verify must be one of {', '.join(map(repr, _VERIFY))}, "
                f"got {self.verify!r}"
            )
        if self.duplicates not in DUPLICATES:
            raise ConfigError(
                f"DbConfig.duplicates must be one of {', '.join(map(repr, DUPLICATES))}, "
                f"got {self.duplicates!r}"
            )
        if self.writers not in WRITERS:
            raise ConfigError(
                f"DbConfig.writers must be one of {', '.join(map(repr, WRITERS))}, "
                f"got {self.writers!r}"
            )
        interval = self.refresh_interval
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not 0 <= interval < float("inf")
        ):
            raise ConfigError(
                "DbConfig.refresh_interval must be None or a finite number of seconds >= 0, "
                f"got {interval!r}"
            )
        for name, low in (
            ("compression_threshold", 1),
            ("compact_threshold_bytes", 4096),
            ("max_log_file_size", 64 * 1024),
            ("write_buffer_bytes", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"DbConfig.{name} must be an int >= {low}, got {value!r}")

    def to_json(self) -> str:
        """Serialise to the JSON stored in the database directory."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DbConfig:
        """Parse stored settings, ignoring fields this version does not know."""
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"stored config.json is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("stored config.json is not a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> DbConfig:
        """A copy with some fields changed (validated again); unknown names are
        :class:`~synarrow.errors.ConfigError`."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(
                f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                hint="settings: " + ", ".join(f.name for f in dataclasses.fields(self)),
            )
        return dataclasses.replace(self, **changes)


def read_stored(directory: Path) -> DbConfig | None:
    """The settings stored in a database directory, or ``None`` if it has none yet.

    Raises :class:`~synarrow.errors.CorruptionError` for a symlink or an oversized file and
    :class:`ConfigError` for one that does not parse.
    """
    try:
        raw = read_bytes(directory / CONFIG_NAME, max_size=_MAX_CONFIG_BYTES, what="settings")
    except FileNotFoundError:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"stored {CONFIG_NAME} is not UTF-8 text: {exc}") from exc
    return DbConfig.from_json(text)


def write_stored(directory: Path, config: DbConfig) -> None:
    """Store ``config`` in a database directory, durably and atomically."""
    write_atomic(directory / CONFIG_NAME, config.to_json().encode())


def stored_with(directory: Path, **changes: Any) -> DbConfig:
    """The database's stored settings (or the defaults) with ``changes`` applied: what
    ``synarrow.open(path, **changes)`` asks for (and stores)."""
    base = read_stored(directory) if directory.is_dir() else None
    return (base or DbConfig()).replace(**changes)


def writers_of(directory: Path, requested: DbConfig | None, override: str | None = None) -> str:
    """Who may write the database at ``directory`` with a handle asking for ``requested``
    (``override``: this handle's own setting): the override, else ``requested.writers``,
    else the stored setting's, else the default's (read before the writer lock is taken,
    which depends on it)."""
    if override is not None:
        return override
    if requested is not None:
        return requested.writers
    stored = read_stored(directory) if directory.is_dir() else None
    return (stored or DbConfig()).writers


def check_request(
    requested: object, *, sync_on_write: object = None, writers: object = None
) -> None:
    """Refuse what :func:`choose` would refuse, before a handle creates anything."""
    if requested is not None and not isinstance(requested, DbConfig):
        raise InvalidArgumentError(f"config must be a DbConfig, got {type(requested).__name__}")
    if writers is not None and writers not in WRITERS:
        raise InvalidArgumentError(
            f"writers must be one of {', '.join(map(repr, WRITERS))} or None, got {writers!r}"
        )
    if sync_on_write is not None and not isinstance(sync_on_write, bool):
        raise InvalidArgumentError(
            f"sync_on_write must be a bool or None, got {type(sync_on_write).__name__}"
        )


def choose(
    directory: Path,
    requested: DbConfig | None,
    *,
    readonly: bool,
    sync_on_write: bool | None = None,
    writers: str | None = None,
) -> DbConfig:
    """The settings a handle on ``directory`` uses, storing them when they changed.

    ``requested`` (a full config, or ``None`` for the stored one or the defaults) becomes the
    database's setting and is written to ``config.json`` by a writable handle when it differs
    from what is stored. ``sync_on_write`` (``None``: not overridden) applies to this handle
    only and is never written, so an Experiment or ModelRegistry that buffers its writes does
    not change the durability of a later plain ``SynaDB(path)``; ``writers`` likewise.
    """
    check_request(requested, sync_on_write=sync_on_write, writers=writers)
    stored = read_stored(directory)
    chosen = requested or stored or DbConfig()
    if not readonly and chosen != stored:
        write_stored(directory, chosen)
    if sync_on_write is not None and sync_on_write != chosen.sync_on_write:
        chosen = chosen.replace(sync_on_write=sync_on_write)
    if writers is not None and writers != chosen.writers:
        chosen = chosen.replace(writers=writers)
    return chosen

"""Shared helpers for the benchmark suite: result rows, timing, temp dirs,
machine description, and thin adapters for the three systems compared
(synarrow, the reference ``synadb`` 1.4.0, and Python's ``sqlite3``).

The synarrow side is written strictly against the public API (the names exported by
``synarrow/__init__.py`` and documented in ``README.md``); nothing here reaches into
synarrow internals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gc
import json
import os
import platform
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# --------------------------------------------------------------------------
# Result rows
# --------------------------------------------------------------------------

REF_DEFAULT = "synadb"


_FAILED_CHECK = re.compile(
    r"MISMATCH|wrong values in sample: [1-9]|\bzero-copy: (False|NO)\b"
    r"|\b(equal|same data|read back|ok): False\b"
)


def check_failed(note: str) -> bool:
    """Whether a row's note reports a failed correctness check.

    Benchmarks write their checks into the note ("matches numpy" / "MISMATCH: ...",
    "equal: True" / "equal: False", "wrong values in sample: 0"); a failed one makes the
    row's target fail, whatever the speed.
    """
    return bool(_FAILED_CHECK.search(note or ""))


@dataclasses.dataclass
class Row:
    """One measured figure.

    ``value`` is None when the measurement failed; ``note`` then says why.
    ``higher_better`` tells the renderer how to form the "vs ref" ratio
    (always reported so that > 1 means "better than the reference").
    ``target`` is an optional acceptance criterion from the issue text:
    ``("min", x)``  value >= x;  ``("max", x)``  value <= x;
    ``("ratio", x)`` ratio vs ``ref`` >= x.
    """

    issue: int
    bench: str  # benchmark name (the --only name)
    figure: str  # what is measured, e.g. "append (no sync)"
    system: str  # "synarrow", "synadb", "sqlite", "duckdb table", ...
    value: float | None
    unit: str
    higher_better: bool = True
    note: str = ""
    ref: str | None = REF_DEFAULT
    target: tuple | None = None
    target_text: str = ""
    # Whether the result was checked and found right; None: inferred from the note.
    correct: bool | None = None

    def wrong(self) -> bool:
        """Whether the row's correctness check failed (explicitly, or by its note)."""
        if self.correct is not None:
            return not self.correct
        return check_failed(self.note)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Row:
        d = json.loads(line)
        if d.get("target") is not None:
            d["target"] = tuple(d["target"])
        return cls(**d)


class Ctx:
    """Carries run options and collects rows (optionally streaming them to a
    JSON-lines file so a worker killed by the timeout keeps what it measured)."""

    def __init__(
        self, quick: bool = False, rows_file: str | None = None, tmp_root: str | None = None
    ):
        self.quick = quick
        self.rows: list[Row] = []
        self._rows_file = rows_file
        self.tmp_root = tmp_root or os.environ.get("BENCH_TMPDIR") or "/tmp"

    # sizes ---------------------------------------------------------------
    def n(self, default: int, quick: int) -> int:
        return quick if self.quick else default

    # rows ----------------------------------------------------------------
    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if self._rows_file:
            with open(self._rows_file, "a") as f:
                f.write(row.to_json() + "\n")
        log(
            f"  {row.system:<14} {row.figure:<44} {fmt_value(row.value, row.unit):>18}"
            + (f"   ({row.note})" if row.note else "")
        )
        return row

    @contextlib.contextmanager
    def guard(
        self, issue: int, bench: str, figure: str, system: str, unit: str = "", **row_kw
    ) -> Iterator[None]:
        """Run one side of a benchmark; on any exception record an error row
        instead of propagating, so the other systems are still measured."""
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            if isinstance(e, SystemExit):
                raise
            tb = traceback.format_exc()
            log(tb)
            msg = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
            if len(msg) > 160:
                msg = msg[:157] + "..."
            self.add(Row(issue, bench, figure, system, None, unit, note=f"ERROR {msg}", **row_kw))

    @contextlib.contextmanager
    def tmpdir(self, tag: str) -> Iterator[str]:
        d = tempfile.mkdtemp(prefix=f"synarrow-bench-{tag}-", dir=self.tmp_root)
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------


def _si(x: float) -> str:
    ax = abs(x)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit.endswith("/s"):
        return f"{_si(v)} {unit}"
    if unit in ("s", "ms", "x", "B/entry", "B", "µs"):
        if abs(v) >= 100:
            return f"{v:,.0f} {unit}"
        return f"{v:.3g} {unit}"
    return f"{v:.4g} {unit}".strip()


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def best_time(
    fn: Callable[[], Any],
    repeats: int = 3,
    budget_s: float = 5.0,
    setup: Callable[[], Any] | None = None,
) -> float:
    """Best wall time of ``fn()`` over up to ``repeats`` runs; stops early once
    ``budget_s`` has been spent (at least one run always happens).  ``setup``
    (untimed) runs before each repeat."""
    best = float("inf")
    spent = 0.0
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        with no_gc():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        if spent >= budget_s:
            break
    return best


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def disk_bytes(path: str) -> int:
    """Sum of file sizes at ``path`` (a file, or every file below a directory)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def files_with_prefix_bytes(path: str) -> int:
    """Size of ``path`` plus siblings such as ``path-wal`` / ``path-shm``."""
    d, base = os.path.split(path)
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith(base))


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def sensor_keys(n: int, width: int = 4, prefix: str = "sensor/") -> list[str]:
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def now_us() -> int:
    return time.time_ns() // 1000


T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


def regular_ts_us(n: int, step_s: float = 1.0, start_us: int = T0_US) -> np.ndarray:
    return start_us + (np.arange(n, dtype=np.int64) * int(step_s * 1_000_000))


def sensor_series(n: int, seed: int = 0) -> np.ndarray:
    """A realistic regular sensor signal with 0.1 resolution (daily cycle + noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    return np.round(20.0 + 5.0 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(0, 0.3, n), 1)


# --------------------------------------------------------------------------
# System adapters
# --------------------------------------------------------------------------


def pwrite_fdatasync_seconds(directory: str, n: int) -> float:
    """Seconds for ``n`` x ``os.pwrite(fd, 40 bytes, offset) + os.fdatasync(fd)`` into a
    new file in ``directory``: this disk's own rate of durable small writes."""
    fd = os.open(os.path.join(directory, "f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        rec = b"x" * 40
        t0 = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, rec, 40 * i)
            os.fdatasync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def sa_open(path: str, readonly: bool = False, **config: Any):
    """Open a synarrow database through the public API only."""
    import synarrow

    if config:
        return synarrow.SynaDB(path, config=synarrow.DbConfig(**config), readonly=readonly)
    return synarrow.SynaDB(path, readonly=readonly)


_TS_FORM: list[str] = []  # which timestamp form synarrow accepted (cached)


def _ts_forms(ts_us: np.ndarray):
    import pyarrow as pa

    return {
        "datetime64[us]": lambda: ts_us.astype("datetime64[us]"),
        "pa.timestamp(us,UTC)": lambda: pa.array(ts_us, pa.timestamp("us", tz="UTC")),
        "int64 µs": lambda: ts_us,
    }


def sa_append_batch(db, key: str, values, ts_us: np.ndarray | None = None):
    """``db.append_batch(key, values, timestamps=...)``.  API.md does not fix the
    timestamp array type, so try numpy datetime64[us], an Arrow timestamp array,
    then int64 microseconds, and remember the first one accepted."""
    if ts_us is None:
        return db.append_batch(key, values)
    forms = _ts_forms(ts_us)
    order = _TS_FORM + [k for k in forms if k not in _TS_FORM]
    last: BaseException | None = None
    for name in order:
        try:
            r = db.append_batch(key, values, timestamps=forms[name]())
        except (TypeError, ValueError) as e:  # synarrow errors may subclass these
            last = e
            continue
        except Exception as e:  # SynaError for invalid value, etc.
            last = e
            continue
        if not _TS_FORM:
            _TS_FORM.append(name)
        return r
    assert last is not None
    raise last


def ts_form_used() -> str:
    return _TS_FORM[0] if _TS_FORM else "?"


def synadb_open(path: str, sync_on_write: bool):
    import synadb

    return synadb.SynaDB(path, sync_on_write=sync_on_write)


SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS h (key TEXT NOT NULL, ts INTEGER NOT NULL, value REAL);"
    "CREATE INDEX IF NOT EXISTS h_key_ts ON h(key, ts);"
)


def sqlite_open(path: str, durable: bool, check_same_thread: bool = True) -> sqlite3.Connection:
    """sqlite3 in autocommit mode, WAL, synchronous=FULL (durable) or OFF."""
    con = sqlite3.connect(
        path, isolation_level=None, check_same_thread=check_same_thread, timeout=60.0
    )
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    con.executescript(SQLITE_SCHEMA)
    return con


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def _fs_of(path: str) -> str:
    best, desc = "", "?"
    try:
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, desc = mnt, f"{fstype} ({dev} on {mnt})"
    except OSError:
        pass
    return desc


def _ver(mod: str) -> str:
    try:
        m = __import__(mod)
        v = getattr(m, "__version__", None)
        if v is None:
            from importlib.metadata import version

            v = version(mod)
        return str(v)
    except Exception as e:
        return f"not importable ({type(e).__name__}: {str(e)[:80]})"


def machine_info(tmp_root: str = "/tmp") -> dict[str, str]:
    try:
        ncpu_avail = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu_avail = os.cpu_count() or 0
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{ncpu_avail} usable / {os.cpu_count()} logical",
        "ram": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "temp dir fs": f"{tmp_root}: {_fs_of(tmp_root)}",
        "python": platform.python_version(),
        "numpy": _ver("numpy"),
        "pyarrow": _ver("pyarrow"),
        "duckdb": _ver("duckdb"),
        "pandas": _ver("pandas"),
        "sqlite": sqlite3.sqlite_version,
        "synadb": _ver("synadb"),
        "synarrow": _ver("synarrow"),
    }

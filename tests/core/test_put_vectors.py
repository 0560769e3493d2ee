"""``SynaDB.put_vectors``: the bulk vector append, checked against a loop of ``append`` calls.

It must read back exactly like one ``append`` per key (values, histories, timestamps), move
``next_sequence`` by one per key, be all or nothing (bad input and real write failures
leave no trace), survive a SIGKILL right after it returns with ``sync_on_write=True``, be
replayed on reopen and kept by compaction, and never share the caller's buffer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import NO_SYNC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.check import check_database
from synarrow.errors import InvalidArgumentError, InvalidKeyError, InvalidValueError, SynaError

KEY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


def _history(db: synarrow.SynaDB, key: str) -> list[tuple[Any, list[float]]]:
    return [(row["ts"], row["value"]) for row in db.get_history(key).to_pylist()]


def _ts_us(db: synarrow.SynaDB, key: str) -> list[int]:
    column = db.get_history(key).column("ts")
    return [int(v) for v in column.cast("int64").to_pylist()]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.lists(KEY, min_size=1, max_size=12, unique=True),
    dims=st.integers(1, 9),
    earlier=st.lists(KEY, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    explicit=st.booleans(),
)
def test_same_reads_as_an_append_loop(
    tmp_path_factory: pytest.TempPathFactory,
    keys: list[str],
    dims: int,
    earlier: list[str],
    seed: int,
    explicit: bool,
) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((len(keys), dims)).astype(np.float32)
    base = tmp_path_factory.mktemp("pv")
    bulk = synarrow.SynaDB(base / "bulk.db", NO_SYNC)
    loop = synarrow.SynaDB(base / "loop.db", NO_SYNC)
    try:
        for db in (bulk, loop):
            for i, key in enumerate(earlier):  # older entries, some under the same keys
                db.append(key, np.full(dims, i, np.float32), timestamp=1_000 + i)
        ts = 1_700_000_000_000_000 if explicit else None
        before = bulk.next_sequence
        before_last = max((max(_ts_us(bulk, k)) for k in set(earlier)), default=0)
        assert bulk.put_vectors(keys, matrix, timestamp=ts) == len(keys)
        assert bulk.next_sequence == before + len(keys)
        for key, row in zip(keys, matrix):
            loop.append(key, row, timestamp=ts)
        assert bulk.next_sequence == loop.next_sequence
        assert sorted(bulk.keys()) == sorted(loop.keys())
        for key, row in zip(keys, matrix):
            got = bulk.get(key)
            assert isinstance(got, np.ndarray) and got.dtype == np.float32
            np.testing.assert_array_equal(got, row)
            want = loop.get_history(key).column("value").to_pylist()
            assert bulk.get_history(key).column("value").to_pylist() == want
        written = [_ts_us(bulk, key)[-1] for key in keys]
        if explicit:
            assert written == [ts] * len(keys)
            for key in keys:
                assert _ts_us(bulk, key) == _ts_us(loop, key)
        else:
            assert all(b > a for a, b in zip(written, written[1:]))
            assert written[0] > before_last
    finally:
        bulk.close()
        loop.close()


def test_default_timestamps_follow_earlier_appends(db: synarrow.SynaDB) -> None:
    far = 4_000_000_000_000_000  # an explicit timestamp far in the future
    db.append("x", np.ones(2, np.float32), timestamp=far)
    db.append("y", np.ones(2, np.float32))
    last = _ts_us(db, "y")[-1]
    db.put_vectors(["a", "b", "c"], np.ones((3, 2)))
    stamps = [_ts_us(db, k)[0] for k in ("a", "b", "c")]
    assert stamps[0] > last and stamps[1] == stamps[0] + 1 and stamps[2] == stamps[1] + 1
    db.put_vectors(["a"], np.zeros((1, 2)))
    assert _ts_us(db, "a")[-1] > stamps[2]
    db.append("z", 1.0)
    assert _ts_us(db, "z")[0] > _ts_us(db, "a")[-1]


BAD_INPUTS = [
    pytest.param(["p", "p"], np.ones((2, 3)), InvalidArgumentError, "distinct", id="duplicate"),
    pytest.param(["p", "q"], np.ones(3), InvalidValueError, "shape", id="one-d"),
    pytest.param(["p", "q"], np.ones((3, 3)), InvalidValueError, "shape", id="row-count"),
    pytest.param(["p", "q"], np.ones((2, 0)), InvalidValueError, "shape", id="zero-dims"),
    pytest.param(["p", "q"], [["a", "b"], ["c", "d"]], InvalidValueError, "numbers", id="text"),
    pytest.param(["p", "q"], np.ones((2, 3), bool), InvalidValueError, "boolean", id="bool"),
    pytest.param(["p", ""], np.ones((2, 3)), InvalidKeyError, "empty", id="empty-key"),
    pytest.param(["p", 7], np.ones((2, 3)), InvalidKeyError, "str", id="int-key"),
    pytest.param(["p", None], np.ones((2, 3)), InvalidKeyError, "str", id="none-key"),
]


@pytest.mark.parametrize(("keys", "vectors", "error", "words"), BAD_INPUTS)
def test_bad_input_writes_nothing(
    db: synarrow.SynaDB, keys: list[Any], vectors: Any, error: type[SynaError], words: str
) -> None:
    db.put_vectors(["p"], np.full((1, 3), 2.0))
    before = db.next_sequence
    with pytest.raises(error, match=words):
        db.put_vectors(keys, vectors)
    assert issubclass(error, SynaError)
    assert db.next_sequence == before
    assert db.keys() == ["p"]
    assert len(db.get_history("p")) == 1
    np.testing.assert_array_equal(db.get("p"), np.full(3, 2.0, np.float32))


def test_bad_timestamp_writes_nothing(db: synarrow.SynaDB) -> None:
    with pytest.raises(SynaError):
        db.put_vectors(["a"], np.ones((1, 2)), timestamp="not a time")
    assert db.next_sequence == 0 and db.keys() == []


def test_caller_mutation_after_the_call_changes_nothing(db: synarrow.SynaDB) -> None:
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    kept = matrix.copy()
    db.put_vectors(["a", "b", "c"], matrix)
    matrix[:] = -1
    for key, row in zip(["a", "b", "c"], kept):
        np.testing.assert_array_equal(db.get(key), row)
        np.testing.assert_array_equal(db.get_history(key).column("value").to_pylist()[0], row)
    got = db.get("a")
    got[:] = 99  # a read returns a copy too
    np.testing.assert_array_equal(db.get("a"), kept[0])


def test_reopen_and_compaction_keep_them(db_path: Path) -> None:
    matrix = np.random.default_rng(1).standard_normal((50, 6)).astype(np.float32)
    keys = [f"v/{i}" for i in range(50)]
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.put_vectors(keys[:25], matrix[:25] - 1)
        db.put_vectors(keys, matrix)
        seq = db.next_sequence
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        assert db.next_sequence == seq
        for i, key in enumerate(keys):
            np.testing.assert_array_equal(db.get(key), matrix[i])
        db.compact()
        db.put_vectors(keys[:5], matrix[:5] * 2)
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        for i, key in enumerate(keys):
            want = matrix[i] * 2 if i < 5 else matrix[i]
            np.testing.assert_array_equal(db.get(key), want)
            history = db.get_history(key).column("value").to_pylist()
            expect = [matrix[i] - 1] * (i < 25) + [matrix[i]] + [matrix[i] * 2] * (i < 5)
            np.testing.assert_array_equal(np.array(history), np.array(expect))


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import synarrow
    db = synarrow.SynaDB(sys.argv[1], synarrow.DbConfig(sync_on_write=True, auto_compact=False))
    matrix = np.random.default_rng(7).standard_normal((300, 8)).astype(np.float32)
    db.put_vectors([f"k{i}" for i in range(300)], matrix)
    os.kill(os.getpid(), signal.SIGKILL)  # right after it returned: no close, no flush
    """
)


def test_durable_through_sigkill_right_after_return(db_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(db_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    matrix = np.random.default_rng(7).standard_normal((300, 8)).astype(np.float32)
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        assert db.next_sequence == 300
        for i in range(300):
            np.testing.assert_array_equal(db.get(f"k{i}"), matrix[i])
    report = check_database(db_path)
    assert report.ok, report.damage


FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    import numpy as np
    import synarrow

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    path = Path(sys.argv[1])
    # write_buffer_bytes=0: every entry reaches write() at once, so the limit hits one.
    cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=False, write_buffer_bytes=0)
    db = synarrow.SynaDB(path, cfg)
    log = path / "log" / "00000001.log"
    db.put_vectors(["a"], np.eye(4)[:1])
    before = log.stat().st_size
    db.put_vectors(["b"], np.eye(4)[1:2])
    entry = log.stat().st_size - before  # one entry: header + 1-byte key + 4 float32
    size = log.stat().st_size
    seq = db.next_sequence
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 2 * entry, hard))
    out = {"size": size, "seq": seq}
    try:
        db.put_vectors(["a", "c", "d", "b"], np.eye(4)[[2, 3, 0, 1]] + 0.5)  # room for two
        out["error"] = None
    except synarrow.SynaError as exc:
        out["error"] = type(exc).__name__
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    out["size_after"] = log.stat().st_size
    out["seq_after"] = db.next_sequence
    out["keys"] = db.keys()
    out["a"] = db.get("a").tolist()
    out["b"] = db.get("b").tolist()
    out["history_a"] = len(db.get_history("a"))
    db.put_vectors(["e"], np.ones((1, 4)))  # the log still takes writes
    db.close()
    print(json.dumps(out))
    """
)


def test_real_write_failure_is_all_or_nothing(db_path: Path) -> None:
    pytest.importorskip("resource")
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(db_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["error"] == "StorageFullError"
    assert out["size_after"] == out["size"]  # cut back to where the call began
    assert out["seq_after"] == out["seq"]
    assert out["keys"] == ["a", "b"]
    assert out["a"] == [1.0, 0.0, 0.0, 0.0] and out["b"] == [0.0, 1.0, 0.0, 0.0]
    assert out["history_a"] == 1
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        assert db.keys() == ["a", "b", "e"]
        assert len(db.get_history("a")) == 1 and db.get("c") is None
        np.testing.assert_array_equal(db.get("b"), np.eye(4, dtype=np.float32)[1])
    assert check_database(db_path).ok

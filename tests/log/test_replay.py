"""The vectorised index rebuild: grouping keys, delta chains, mixed entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.log import replay

MIXED_KEYS = ["a", "bb", "key/ü", "a" * 20, "zz"]
SAME_LENGTH_KEYS = ["s/00001", "s/00002", "sensor9", "s/x" * 2 + "!", "zz" * 3 + "z"]


def _fill(path: Path, keys: list[str] = MIXED_KEYS) -> dict[str, list]:
    expected: dict[str, list] = {}
    zz = keys[-1]
    with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False, auto_compact=False)) as db:
        for i in range(500):
            key = keys[i % 5]
            value = float(i) if i % 7 else i
            db.append(key, value)
            expected.setdefault(key, []).append(value)
        db.delete(zz)
        expected.pop(zz)
        db.append(zz, "back")
        expected[zz] = ["back"]
    return expected


def _read(path: Path) -> dict[str, list]:
    with synarrow.SynaDB(path) as db:
        out = {}
        for k in db.keys():
            rows = db.get_history(k).column("value").to_pylist()
            out[k] = [
                next(v for v in r.values() if v is not None) if isinstance(r, dict) else r
                for r in rows
            ]
        return out


@pytest.mark.parametrize("keys", [MIXED_KEYS, SAME_LENGTH_KEYS], ids=["mixed", "same-length"])
def test_rebuild_matches_what_was_written(tmp_path: Path, keys: list[str]) -> None:
    expected = _fill(tmp_path / "db", keys)
    assert _read(tmp_path / "db") == expected


@pytest.mark.parametrize("keys", [MIXED_KEYS, SAME_LENGTH_KEYS], ids=["mixed", "same-length"])
def test_hash_collisions_fall_back_to_exact_grouping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: list[str]
) -> None:
    assert len({len(k) for k in SAME_LENGTH_KEYS}) == 1
    expected = _fill(tmp_path / "db", keys)
    for f in (tmp_path / "db" / "log").glob("*.idx"):
        f.unlink()
    monkeypatch.setattr(replay, "_HASH_MULTIPLIER", np.uint64(0))  # every key hashes alike
    calls = []
    real = replay._key_ids_by_bytes
    monkeypatch.setattr(
        replay,
        "_key_ids_by_bytes",
        lambda *a: calls.append(1) or real(*a),  # type: ignore[func-returns-value]
    )
    assert _read(tmp_path / "db") == expected
    assert calls


def _check_numbering(h: np.ndarray) -> None:
    ids, count = replay._dense_ids(h)
    uniq, inv = np.unique(h, return_inverse=True)
    assert count == len(uniq)
    assert sorted(set(ids.tolist())) == list(range(count))
    # equal hashes get equal numbers and different hashes different ones
    first = {}
    for v, i in zip(inv.tolist(), ids.tolist()):
        assert first.setdefault(v, i) == i
    assert len(set(first.values())) == count


def test_dense_numbering_of_hashes() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    _check_numbering(keys[rng.integers(0, 3000, 50_000)])
    _check_numbering(keys[:1])


def test_dense_numbering_when_every_table_slot_collides() -> None:
    # Values that differ only in their top bits land in one slot in every round, so the
    # rounds number one value each and the rest is numbered by sorting.
    h = (np.arange(40, dtype=np.uint64) << np.uint64(58))[np.arange(1000) % 40]
    _check_numbering(h)


def test_stable_order_beyond_16_bits() -> None:
    rng = np.random.default_rng(2)
    for count in (10, 70_000, 5_000_000):
        ids = rng.integers(0, count, 200_000)
        expect = np.argsort(ids, kind="stable")
        assert np.array_equal(replay._stable_order(ids, count), expect)


def test_rebuild_of_more_keys_than_16_bits_number(tmp_path: Path) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    n = 70_000
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:
        for i in range(n):
            db.append(f"k{i}", float(i))
        for i in range(0, n, 7):
            db.append(f"k{i}", -float(i))
    for f in (tmp_path / "db" / "log").glob("*.idx"):
        f.unlink()  # walked, not read from the sidecar
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:
        assert len(db) == n
        for i in (0, 1, 6, 7, 69_999, 69_993):
            want = [float(i), -float(i)] if i % 7 == 0 else [float(i)]
            assert db.get_history_floats(f"k{i}").tolist() == want
            assert db.get(f"k{i}") == want[-1]


def _decode_reference(raw: np.ndarray, reset: np.ndarray, is_float: bool) -> list[int]:
    out: list[int] = []
    for r, absolute in zip(raw.tolist(), reset.tolist()):
        prev = out[-1] if out else 0  # a chain without its start is relative to zero
        if absolute:
            out.append(r)
        elif is_float:
            out.append(prev ^ r)
        else:
            step = (r >> 1) ^ -(r & 1)  # zigzag
            out.append((prev + step) % (1 << 64))
    return out


@pytest.mark.parametrize("is_float", [True, False])
def test_segmented_decode_matches_a_plain_loop(is_float: bool) -> None:
    rng = np.random.default_rng(4)
    for _ in range(100):
        n = int(rng.integers(1, 200))
        raw = rng.integers(0, 2**64, n, dtype=np.uint64)
        reset = rng.random(n) < rng.random()
        got = replay._segmented_decode(raw, reset, is_float)
        assert got.tolist() == _decode_reference(raw, reset, is_float)


def _histories(path: Path) -> dict[str, tuple[list, list]]:
    with synarrow.SynaDB(path) as db:
        out = {}
        for k in db.keys():
            t = db.get_history(k)
            out[k] = (t.column("ts").to_pylist(), t.column("value").to_pylist())
        return out


def test_reopen_same_with_sidecar_without_it_and_after_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "db"
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    rng = np.random.default_rng(6)
    with synarrow.SynaDB(path, cfg) as db:
        for i in range(3000):  # interleaved keys of two lengths: delta chains per key
            key = f"s{i % 37}" if i % 3 else f"sensor/{i % 11:04d}"
            db.append(key, float(rng.standard_normal()) if i % 5 else int(i))
        db.append_batch("batch", rng.standard_normal(500))
    log = path / "log"
    assert list(log.glob("*.idx"))
    with_sidecar = _histories(path)
    for f in log.glob("*.idx"):
        f.unlink()
    assert _histories(path) == with_sidecar
    segment = sorted(log.glob("*.log"))[-1]
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\x07" * 13)  # a torn last entry
    for f in log.glob("*.idx"):
        f.unlink()
    assert _histories(path) == with_sidecar
    assert segment.stat().st_size == size  # the torn bytes were cut off

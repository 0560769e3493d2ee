"""The vectorised index rebuild: grouping keys, delta chains, mixed entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.log import replay


def _fill(path: Path) -> dict[str, list]:
    expected: dict[str, list] = {}
    with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False, auto_compact=False)) as db:
        for i in range(500):
            key = ["a", "bb", "key/ü", "a" * 20, "zz"][i % 5]
            value = float(i) if i % 7 else i
            db.append(key, value)
            expected.setdefault(key, []).append(value)
        db.delete("zz")
        expected.pop("zz")
        db.append("zz", "back")
        expected["zz"] = ["back"]
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


def test_rebuild_matches_what_was_written(tmp_path: Path) -> None:
    expected = _fill(tmp_path / "db")
    assert _read(tmp_path / "db") == expected


def test_hash_collisions_fall_back_to_exact_grouping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _fill(tmp_path / "db")
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

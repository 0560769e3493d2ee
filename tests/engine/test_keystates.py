"""Key states made on first use, and compactions that carry unchanged keys' index rows.

The engine keeps a state only for the keys it used; the rest stay in the columnar index.
These tests check that every path that touches a key finds it there (reads, writes,
deletes, range deletes, listings), that a compaction writes only what changed while every
other key keeps its history, and that keys moved out of a dying file keep their history
whether their state was loaded before the compaction, during it, or never.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.columnar import compact as compact_mod
from synarrow.config import DbConfig


def _fill(path: Path, n: int, per: int = 4) -> dict[str, list[float]]:
    model = {}
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        for i in range(n):
            values = [float(i * 100 + j) for j in range(per)]
            db.append_batch(f"key/{i:03d}", np.array(values), timestamps=np.arange(per) + 1000)
            model[f"key/{i:03d}"] = values
        db.compact()
    return model


def _check(db: synarrow.SynaDB, model: dict[str, list[float]]) -> None:
    assert sorted(db.keys()) == sorted(model)
    assert len(db) == len(model)
    for key, values in model.items():
        assert db.get_history_floats(key).tolist() == values, key
        assert db.get(key) == values[-1]


def test_every_path_finds_an_unloaded_key(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model = _fill(path, 40)
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        assert db.exists("key/001") and "key/002" in db
        assert db.delete("key/003") is True
        del model["key/003"]
        db.append("key/004", 7.0, timestamp=5000)
        model["key/004"].append(7.0)
        assert db.delete_range("key/005", 1000, 1002) == 2
        model["key/005"] = model["key/005"][2:]
        assert db.get_float("key/006") == model["key/006"][-1]
        assert db.get("key/007", at=1001) == model["key/007"][1]
        assert db.sql("SELECT count(*) AS n FROM history").column("n")[0].as_py() == sum(
            len(v) for v in model.values()
        )
        _check(db, model)
    with synarrow.SynaDB(path) as db:
        _check(db, model)


def test_compaction_writes_only_changed_keys_and_carries_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model = _fill(path, 200)
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        for round_ in range(8):
            for i in range(round_, 200, 50):
                key = f"key/{i:03d}"
                db.append(key, -1.0 - round_, timestamp=10_000 + round_)
                model[key].append(-1.0 - round_)
            result = db.compact()
            assert result["keys"] == 200
            assert result["keys_rewritten"] + result["keys_appended"] <= 200
            assert result["entries_written"] < 200 * 5  # never everything
            if round_ == 0:  # only the changed keys were loaded (the check below loads all)
                assert len(db._engine.states) == 4
            _check(db, model)
        assert db.stats()["columnar_files"] <= 6
    with synarrow.SynaDB(path) as db:
        _check(db, model)
        assert db.compact(full=True)["keys_rewritten"] == 200
        _check(db, model)


@pytest.mark.parametrize("when", ["before", "during", "never"])
def test_keys_moved_out_of_a_dying_file_keep_their_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    path = tmp_path / "db"
    model = _fill(path, 100)
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        engine = db._engine
        quiet = "key/099"  # never written again: it moves when the first file dies
        if when == "before":
            assert db.get(quiet) == model[quiet][-1]
        real = compact_mod.write_generation

        def load_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
            with engine.lock:
                engine.loaded(quiet)  # loaded from the old index while the fold runs
            return real(*args, **kwargs)

        if when == "during":
            monkeypatch.setattr(compact_mod, "write_generation", load_meanwhile)
        for i in range(60):  # more than half the first file's rows die
            key = f"key/{i:03d}"
            db.append(key, 0.5, timestamp=9999)
            model[key].append(0.5)
        first = {engine.columnar.manifest.files[0].name}
        result = db.compact()
        assert first <= set(result["files_removed"])  # the old file is gone
        assert result["keys_rewritten"] == 100
        if when != "never":
            names = {r.file.path.name for r in engine.states[quiet].base}
            assert names <= {f.name for f in engine.columnar.manifest.files}
        _check(db, model)
        db.append(quiet, 1.0, timestamp=20_000)
        model[quiet].append(1.0)
        _check(db, model)
        db.compact()
        _check(db, model)
    with synarrow.SynaDB(path) as db:
        _check(db, model)


def test_retention_still_sees_unloaded_keys(tmp_path: Path) -> None:
    path = tmp_path / "db"
    now = time.time_ns() // 1000
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        for i in range(20):
            db.append_batch(
                f"m/{i}", np.array([1.0, 2.0]), timestamps=np.array([now - 10**12, now])
            )
        db.compact()
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        db.set_retention("m/*", max_age="1h")
        assert len(db) == 20
        db.compact()
    with synarrow.SynaDB(path) as db:
        assert db.get_history_floats("m/3").tolist() == [2.0]
        assert len(db) == 20


def test_read_only_and_verify_open_handles(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model = _fill(path, 30)
    with synarrow.SynaDB(path, readonly=True) as db:
        _check(db, model)
    with synarrow.SynaDB(path, DbConfig(verify="open"), readonly=True) as db:
        _check(db, model)

"""``SynaDB.append_batches``: several keys in one write, all of it or none of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.errors import InvalidArgumentError, InvalidKeyError, InvalidValueError
from synarrow.log.writer import LogWriter

T0 = 1_700_000_000_000_000


def _items(n: int) -> list[tuple[str, object, object]]:
    rng = np.random.default_rng(7)
    ts = T0 + np.arange(n, dtype=np.int64)
    return [
        ("smooth", np.arange(n, dtype=np.float64) / 8, ts),  # LZ4 pays off
        ("noise", rng.random(n), ts),  # incompressible: written aligned, uncompressed
        ("counts", np.arange(n, dtype=np.int64), None),
        ("labels", ["a", "bb", "ccc"], T0 + np.arange(3)),
        ("smooth", np.full(n, 2.5), ts + n),  # a second part of the same key, after the first
    ]


def _snapshot(db: synarrow.SynaDB) -> dict[str, list[object]]:
    return {k: db.get_history(k).column("value").to_pylist() for k in sorted(db.keys())}


def test_many_keys_land_in_order_and_survive_reopen(tmp_path: Path) -> None:
    n = 50_000
    db = synarrow.open(tmp_path / "db", sync_on_write=False)
    assert db.append_batches(_items(n)) == 4 * n + 3
    smooth = db.get_history("smooth")
    assert smooth.num_rows == 2 * n
    assert smooth.column("value").to_pylist()[n - 1 : n + 1] == [(n - 1) / 8, 2.5]
    assert db.get_history("labels").column("value").to_pylist() == ["a", "bb", "ccc"]
    assert db.get_history("counts").column("value").to_pylist()[-1] == n - 1
    before = _snapshot(db)
    db.close()
    with synarrow.open(tmp_path / "db") as again:
        assert _snapshot(again) == before


def test_a_failed_write_anywhere_leaves_every_key_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = synarrow.open(tmp_path / "db", sync_on_write=False)
    db.append_batch("smooth", [1.0, 2.0], timestamps=[T0 - 2, T0 - 1])
    before = _snapshot(db)
    calls = 0
    real = LogWriter.write_parts

    def failing(self: LogWriter, *args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LogWriter, "write_parts", failing)
    with pytest.raises(OSError):
        db.append_batches(_items(50_000))
    assert calls == 4  # three entries were written, then cut out again
    monkeypatch.undo()
    assert _snapshot(db) == before
    assert not db.exists("noise")
    db.append("after", 1.0)
    db.close()
    with synarrow.open(tmp_path / "db") as again:
        assert _snapshot(again) == {**before, "after": [1.0]}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (("", [1.0], None), InvalidKeyError),
        (("ok", [1.0, 2.0], [T0]), InvalidArgumentError),
        (("ok", [{"a": 1}], None), InvalidValueError),
    ],
)
def test_a_bad_item_anywhere_writes_nothing(
    tmp_path: Path, bad: tuple[str, object, object], error: type[Exception]
) -> None:
    db = synarrow.open(tmp_path / "db", sync_on_write=False)
    with pytest.raises(error):
        db.append_batches([*_items(1000), bad])
    assert db.keys() == []
    db.close()
    with synarrow.open(tmp_path / "db") as again:
        assert again.keys() == []

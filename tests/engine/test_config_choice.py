"""Which settings a handle uses, and what it writes back (``synarrow.config.choose``).

A handle-only override (``SynaDB(path, sync_on_write=False)``, what an Experiment or a
ModelRegistry uses to buffer its writes) must never switch a later plain ``SynaDB(path)`` to
non-durable writes; ``synarrow.open(path, **config)`` is documented to store its settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import synarrow
from synarrow import config as config_mod
from synarrow.log import writer as writer_mod


def _stored(path: Path) -> synarrow.DbConfig | None:
    return config_mod.read_stored(path)


def _fsyncs_for_appends(db: synarrow.SynaDB, monkeypatch: pytest.MonkeyPatch, n: int = 10) -> int:
    calls = []
    real = writer_mod.sync_data
    monkeypatch.setattr(writer_mod, "sync_data", lambda fd: (calls.append(fd), real(fd)))
    for i in range(n):
        db.append("k", float(i))
    monkeypatch.setattr(writer_mod, "sync_data", real)
    return len(calls)


def test_handle_override_is_never_written_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with synarrow.SynaDB(db_path) as db:
        assert db.config.sync_on_write is True
        assert _fsyncs_for_appends(db, monkeypatch) >= 10
    before = (db_path / "config.json").read_bytes()
    with synarrow.SynaDB(db_path, sync_on_write=False) as fast:
        assert fast.config.sync_on_write is False
        assert _fsyncs_for_appends(fast, monkeypatch) == 0  # the override really applies
    assert (db_path / "config.json").read_bytes() == before
    with synarrow.SynaDB(db_path) as again:
        assert again.config.sync_on_write is True
        assert _fsyncs_for_appends(again, monkeypatch) >= 10
        assert again.get_history_floats("k").tolist() == [float(i % 10) for i in range(30)]


def test_override_on_top_of_a_new_config(db_path: Path) -> None:
    """A full config given to the handle is stored; the override on top of it is not."""
    chosen = synarrow.DbConfig(sync_on_write=False, delta=False)
    with synarrow.SynaDB(db_path, chosen, sync_on_write=True) as db:
        assert db.config == chosen.replace(sync_on_write=True)
    assert _stored(db_path) == chosen
    with synarrow.SynaDB(db_path) as db:
        assert db.config == chosen


def test_open_with_settings_stores_them(db_path: Path) -> None:
    synarrow.SynaDB(db_path).close()
    with synarrow.open(db_path, sync_on_write=False) as db:
        assert db.config.sync_on_write is False
    assert _stored(db_path) == synarrow.DbConfig(sync_on_write=False)
    with synarrow.SynaDB(db_path) as db:
        assert db.config.sync_on_write is False  # documented: open(**config) sets them
    with synarrow.open(db_path, delta=False) as db:
        # Applied to the stored settings, not to the defaults.
        assert db.config == synarrow.DbConfig(sync_on_write=False, delta=False)


def test_readonly_handles_write_no_config(db_path: Path) -> None:
    synarrow.SynaDB(db_path).close()
    before = (db_path / "config.json").read_bytes()
    other = synarrow.DbConfig(delta=False, compression=None)
    with synarrow.SynaDB(db_path, other, readonly=True, sync_on_write=False) as db:
        assert db.config == other.replace(sync_on_write=False)
    assert (db_path / "config.json").read_bytes() == before


def test_a_config_equal_to_the_stored_one_is_not_rewritten(db_path: Path) -> None:
    synarrow.SynaDB(db_path).close()
    stamp = (db_path / "config.json").stat().st_mtime_ns
    inode = (db_path / "config.json").stat().st_ino
    with synarrow.SynaDB(db_path, synarrow.DbConfig()):
        pass
    st = (db_path / "config.json").stat()
    assert (st.st_ino, st.st_mtime_ns) == (inode, stamp)  # replaced files get a new inode


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": {"sync_on_write": False}}, "config must be a DbConfig"),
        ({"sync_on_write": 0}, "sync_on_write must be a bool"),
        ({"sync_on_write": "no"}, "sync_on_write must be a bool"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_created(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    path = tmp_path / "db"
    with pytest.raises(synarrow.InvalidArgumentError, match=message):
        synarrow.SynaDB(path, **kwargs)  # type: ignore[arg-type]
    assert not path.exists()
    with pytest.raises(synarrow.InvalidArgumentError, match=message):
        config_mod.choose(
            tmp_path,
            kwargs.get("config"),
            readonly=True,
            **{  # type: ignore[arg-type]
                k: v for k, v in kwargs.items() if k != "config"
            },
        )

"""Review of issue 15 (snapshots, lineage, Delta export) through the public API: each test
is a finding of the review of the merged branch; they fail until the cause is fixed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import synarrow
from synarrow.errors import CorruptionError, InvalidArgumentError, SynaError


def _cfg() -> synarrow.DbConfig:
    return synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def _pinned_only(path, tag):
    """The data files ``tag`` pins that the current manifest no longer names."""
    record = json.loads((path / "snapshots" / f"{tag}.json").read_text())
    current = json.loads((path / "columnar" / "MANIFEST").read_text())
    now = {f["name"] for f in current["files"]} | {current.get("index")}
    return [f["name"] for f in record["manifest"]["files"] if f["name"] not in now]


def test_lineage_is_not_verified_when_the_snapshot_data_is_gone(tmp_path):
    """Issue 15: lineage says exactly what the model saw; ``Lineage.verified`` /
    ``DataInput.verified`` is the user's proof that the data can still be read. It is
    computed from the tag's record alone (``snapshot_input`` reads only the JSON), so after
    the data files the tag pins are deleted (or damaged) the lineage still says
    ``verified=True`` although ``DataInput.open()`` / ``SynaDB(path, snapshot=tag)`` can no
    longer read it. Reproduce: snapshot, log_input, save_model(run_id=), delete the pinned
    data file, registry.lineage(...).verified."""
    db_path = tmp_path / "db"
    db = synarrow.SynaDB(db_path, config=_cfg())
    db.append_batch("x", np.arange(100.0))
    db.snapshot("train-v1")
    db.delete("x")
    db.append("y", 1.0)
    db.compact(full=True)
    db.close()
    exp = synarrow.Experiment("fit", tmp_path / "exp.db")
    with exp.start_run("r") as run:
        run.log_input(db_path, "train-v1")
    reg = synarrow.ModelRegistry(tmp_path / "reg.db")
    v = reg.save_model("clf", b"weights", run_id=run)
    only = _pinned_only(db_path, "train-v1")
    assert only, "the tag must pin a file the current state does not"
    for name in only:
        (db_path / "columnar" / name).unlink()
    with pytest.raises(SynaError):
        synarrow.SynaDB(db_path, snapshot="train-v1").close()
    lin = reg.lineage("clf", v.version)
    reg.close()
    exp.close()
    assert not lin.verified, "lineage claims verified data that can no longer be read"


def test_snapshot_missing_file_error_does_not_suggest_refused_repair(tmp_path):
    """Bad input gets a clear error whose hint helps. Opening a tag whose pinned data file is
    missing raises CorruptionError with the generic hint 'open with repair=True to skip
    damaged entries', but ``SynaDB(path, snapshot=tag, repair=True)`` is refused
    ('repair= does not apply to a snapshot'): the hint sends the user into a dead end.
    Reproduce: snapshot, compact a change, delete the file only the tag pins, open at tag."""
    path = tmp_path / "db"
    db = synarrow.SynaDB(path, config=_cfg())
    db.append_batch("x", np.arange(10.0))
    db.snapshot("v1")
    db.delete("x")
    db.append("y", 1.0)
    db.compact(full=True)
    db.close()
    for name in _pinned_only(path, "v1"):
        (path / "columnar" / name).unlink()
    with pytest.raises(CorruptionError) as info:
        synarrow.SynaDB(path, snapshot="v1")
    with pytest.raises(InvalidArgumentError):
        synarrow.SynaDB(path, snapshot="v1", repair=True)
    assert "repair=True" not in str(info.value), str(info.value)


def test_alias_named_like_a_stage_is_refused(tmp_path):
    """Issue 15: aliases live "beside the existing stages", and ``load_model(name, version)``
    takes a stage name as ``version``. An alias spelt like a stage ('Production') is accepted,
    so ``load_model('m', 'Production')`` answers the stage (here: NotFoundError, no version
    is in that stage) while ``aliases('m')`` says 'Production' points at version 1: the same
    word names two different things. It should be refused with InvalidArgumentError (as a
    number is). Reproduce: save_model, set_alias('m', 'Production', 1), load_model('m',
    'Production')."""
    reg = synarrow.ModelRegistry(tmp_path / "reg")
    v = reg.save_model("m", b"weights")
    try:
        with pytest.raises(InvalidArgumentError):
            reg.set_alias("m", "Production", v.version)
    finally:
        reg.close()


def test_snapshot_note_that_cannot_be_encoded_is_refused(tmp_path):
    """Bad input gets a clear SynaError and never damages what was written. ``db.snapshot``
    accepts a note holding a lone surrogate ('\\ud800', e.g. from os.fsdecode of a bad file
    name); the record is written, and from then on ``synarrow snapshots PATH`` fails for the
    whole database with exit 1 and a raw ``UnicodeEncodeError`` (not a SynaError message).
    The note should be refused with InvalidArgumentError when the snapshot is taken.
    Reproduce: db.snapshot('n0', note='\\ud800'); synarrow snapshots PATH."""
    import subprocess
    import sys

    path = tmp_path / "db"
    db = synarrow.SynaDB(path, config=_cfg())
    db.append("a", 1.0)
    try:
        db.snapshot("n0", note="\ud800")
    except InvalidArgumentError:
        db.close()
        return
    db.close()
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from synarrow.cli import main; sys.exit(main())"]
        + ["snapshots", str(path)],
        capture_output=True,
    )
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")


def test_snapshots_listing_does_not_send_control_bytes_of_a_note_to_the_terminal(tmp_path):
    """``synarrow snapshots PATH`` shows each note in its table: a newline in a note is
    escaped ('\\n'), but an ESC byte is written raw, so a note such as '\\x1b[2J' (clear
    screen) or '\\x1b]0;...' drives the reader's terminal. Notes are free text from whoever
    took the tag; the listing should show them escaped like the newline. Reproduce:
    db.snapshot('n1', note='a\\x1b[31mRED'); synarrow snapshots PATH | od -c."""
    import subprocess
    import sys

    path = tmp_path / "db"
    db = synarrow.SynaDB(path, config=_cfg())
    db.append("a", 1.0)
    db.snapshot("n1", note="line1\nline2\x1b[31mRED")
    db.close()
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from synarrow.cli import main; sys.exit(main())"]
        + ["snapshots", str(path)],
        capture_output=True,
    )
    assert run.returncode == 0
    assert b"\x1b" not in run.stdout, run.stdout.decode("utf-8", "replace")

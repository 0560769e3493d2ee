"""Serving a snapshot: read-only, reads the tag while a writer goes on, reported read-only
by Flight SQL, and the tag cannot be dropped while it is served. Real servers, real clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.flight as flight
import pytest
from _serve import Served

import synarrow
from synarrow.errors import ReadOnlyError, SnapshotInUseError
from synarrow.flight import FlightClient, FlightServer
from synarrow.flightsql import catalog
from synarrow.flightsql import messages as m

T0 = 1_767_225_600_000_000
TIMEOUT = 30.0
CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[synarrow.SynaDB]:
    """An open writer whose tag ``v1`` holds sensor (3 floats) and name; after the tag the
    sensor grew, name was deleted, new was added and everything was compacted."""
    db = synarrow.SynaDB(tmp_path / "w.db", CONFIG)
    db.append_batch("sensor", [1.0, 2.0, 3.0], timestamps=T0 + np.arange(3))
    db.append("name", "pump-7", timestamp=T0)
    db.snapshot("v1")
    db.append_batch("sensor", [4.0, 5.0], timestamps=T0 + 3 + np.arange(2))
    db.delete("name")
    db.append("new", 1.0)
    db.compact(full=True)
    yield db
    db.close()


def _read_only_info(location: str) -> bool:
    """Flight SQL's SqlInfo FLIGHT_SQL_SERVER_READ_ONLY, asked with a plain Flight client."""
    client = flight.connect(location)
    try:
        cmd = m.pack(m.new("CommandGetSqlInfo", info=[catalog.SERVER_READ_ONLY]))
        info = client.get_flight_info(flight.FlightDescriptor.for_command(cmd))
        table = client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        client.close()
    assert table.column("info_name").to_pylist() == [catalog.SERVER_READ_ONLY]
    return bool(table.column("value")[0].as_py())


def _check_served_tag(c: FlightClient) -> None:
    assert c.keys() == ["name", "sensor"]
    assert c.history("sensor").column("value").to_pylist() == [1.0, 2.0, 3.0]
    assert c.sql("SELECT count(*) AS n FROM history").column("n").to_pylist() == [4]
    assert c.stats()["snapshot"] == "v1"
    with pytest.raises(ReadOnlyError):
        c.append_batch("x", [1.0])
    with pytest.raises(ReadOnlyError):
        c.delete("sensor")
    with pytest.raises(ReadOnlyError):
        c.compact()


def test_python_server_over_a_snapshot_handle(writer: synarrow.SynaDB) -> None:
    with synarrow.SynaDB(writer.path, snapshot="v1") as tagged:
        srv = FlightServer(tagged)  # readonly not passed: a snapshot handle is read-only
        try:
            assert srv.readonly
            with FlightClient(srv.location, timeout=TIMEOUT) as c:
                _check_served_tag(c)
            assert _read_only_info(srv.location) is True
        finally:
            srv.stop()
    assert writer.keys() == ["new", "sensor"]  # the writer saw none of it


def test_cli_serve_snapshot_next_to_a_writer(
    serve: Callable[..., Served], writer: synarrow.SynaDB
) -> None:
    served = serve(writer.path, "--snapshot", "v1")
    assert served.proc.stderr is not None
    banner = served.proc.stderr.readline()  # printed before the location
    assert "(read-only at snapshot 'v1'" in banner, banner
    with FlightClient(served.location, timeout=TIMEOUT) as c:
        _check_served_tag(c)
        writer.append("sensor", 6.0)  # the writer goes on while the tag is served
        writer.compact()
        assert c.history("sensor").num_rows == 3
        assert _read_only_info(served.location) is True
        with pytest.raises(SnapshotInUseError):
            writer.drop_snapshot("v1")  # the server holds the tag open
    assert served.stop() == 0
    writer.drop_snapshot("v1")  # once it stopped, the tag can go
    assert writer.snapshots() == []


def test_cli_serve_snapshot_errors(tmp_path: Path, writer: synarrow.SynaDB) -> None:
    def serve_fails(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "synarrow.cli", "serve", *args, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        return proc.stderr

    assert "not found" in serve_fails(str(writer.path), "--snapshot", "nope")
    missing = tmp_path / "missing.db"
    assert "no such database" in serve_fails(str(missing), "--snapshot", "v1")
    assert not missing.exists()  # a snapshot server never creates a database

"""A real Flight client against a real server on 127.0.0.1 (a free port), every call bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import synarrow
from synarrow.errors import InvalidValueError, KeyNotFoundError, ReadOnlyError
from synarrow.flight import FlightClient, FlightServer, decode_ticket, encode_ticket
from synarrow.sql import SQLError

T0 = 1_767_225_600_000_000
TIMEOUT = 30.0
BIG = 600_000  # more than one ~8 MiB batch on the wire


@pytest.fixture(params=["log", "compacted"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[synarrow.SynaDB]:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    database = synarrow.SynaDB(tmp_path / "served.db", config=cfg)
    ts = T0 + np.arange(BIG, dtype=np.int64) * 1_000_000
    database.append_batch("sensor/big", np.sin(np.arange(BIG) / 100.0), timestamps=ts)
    database.append_batch("sensor/small", [1.0, 2.0, 3.0], timestamps=ts[:3])
    database.append("name", "pump-7")
    if request.param == "compacted":
        database.compact()
    yield database
    database.close()


@pytest.fixture
def server(db: synarrow.SynaDB) -> Iterator[FlightServer]:
    srv = FlightServer(db, port=0)
    assert srv.location.startswith("grpc://127.0.0.1:")
    yield srv
    srv.stop()


@pytest.fixture
def client(server: FlightServer) -> Iterator[FlightClient]:
    with FlightClient(server.location, timeout=TIMEOUT) as c:
        yield c


def test_tickets() -> None:
    assert decode_ticket(encode_ticket(key="a/b")) == {"key": "a/b"}
    assert decode_ticket(encode_ticket(sql="SELECT 1")) == {"sql": "SELECT 1"}
    assert decode_ticket(b"plain/key") == {"key": "plain/key"}
    with pytest.raises(synarrow.SynaError):
        decode_ticket(b'{"other": 1}')
    with pytest.raises(synarrow.SynaError):
        encode_ticket()


def test_list_flights_and_keys(client: FlightClient, db: synarrow.SynaDB) -> None:
    assert client.keys() == ["name", "sensor/big", "sensor/small"]
    assert client.keys("sensor/*") == ["sensor/big", "sensor/small"]
    infos = {
        info.descriptor.path[0].decode(): info
        for info in client.client.list_flights(b"", client.options)
    }
    assert infos["sensor/big"].total_records == BIG
    assert infos["sensor/big"].schema == db.get_history("sensor/big").schema
    ticket = infos["name"].endpoints[0].ticket
    assert client.client.do_get(ticket, client.options).read_all().column("value").to_pylist() == [
        "pump-7"
    ]


def test_do_get_history(client: FlightClient, db: synarrow.SynaDB) -> None:
    got = client.history("sensor/big")
    expected = db.get_history("sensor/big")
    assert got.num_rows == BIG and got.equals(expected)
    reader = client.reader(key="sensor/big")
    assert sum(b.num_rows for b in reader) == BIG
    assert len(got.to_batches()) > 1  # streamed in several batches


def test_do_get_sql(client: FlightClient, db: synarrow.SynaDB) -> None:
    query = (
        "SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) AS avg, count(*) AS n "
        "FROM history WHERE key = 'sensor/big' GROUP BY h ORDER BY h"
    )
    got = client.sql(query)
    local = db.sql(query)
    assert got.schema == local.schema
    assert got.column("h").equals(local.column("h")) and got.column("n").equals(local.column("n"))
    # DuckDB sums in parallel, so the last bits of an average may differ between runs.
    assert np.allclose(got.column("avg").to_numpy(), local.column("avg").to_numpy())
    assert sum(got.column("n").to_pylist()) == BIG


def test_plain_pyarrow_client(server: FlightServer) -> None:
    """What a client in another language does: only Flight calls and JSON tickets."""
    options = flight.FlightCallOptions(timeout=TIMEOUT)
    plain = flight.connect(server.location)
    try:
        table = plain.do_get(flight.Ticket(b'{"key": "sensor/small"}'), options).read_all()
        assert table.column("value").to_pylist() == [1.0, 2.0, 3.0]
        info = plain.get_flight_info(flight.FlightDescriptor.for_path("sensor/small"), options)
        assert info.total_records == 3
        sql = flight.FlightDescriptor.for_command(b"SELECT 42 AS answer")
        assert plain.get_schema(sql, options).schema.names == ["answer"]
        put = pa.table({"value": pa.array([7, 8], pa.int64())})
        writer, _ = plain.do_put(flight.FlightDescriptor.for_path("counts"), put.schema, options)
        writer.write_table(put)
        writer.close()
        table = plain.do_get(flight.Ticket(b"counts"), options).read_all()
        assert table.column("value").to_pylist() == [7, 8]
        with pytest.raises(flight.FlightServerError) as err:
            plain.do_get(flight.Ticket(b"missing"), options).read_all()
        assert "Traceback" not in str(err.value)
        assert json.loads(err.value.extra_info)["error"] == "KeyNotFoundError"
    finally:
        plain.close()


def test_do_put(client: FlightClient, db: synarrow.SynaDB) -> None:
    n = 300_000
    ts = T0 + np.arange(n, dtype=np.int64)
    values = np.random.default_rng(1).standard_normal(n)
    assert client.append_batch("put/x", values, timestamps=ts) == n
    hist = db.get_history("put/x")
    assert np.array_equal(hist.column("value").to_numpy(), values)
    assert np.array_equal(hist.column("ts").cast(pa.int64()).to_numpy(), ts)
    assert client.history("put/x").equals(hist)

    assert client.append_batch("put/now", [1.5, 2.5]) == 2
    assert client.append_batch("put/text", ["a", "b"]) == 2
    assert client.append_batch("put/vec", np.ones((4, 3), dtype=np.float32)) == 4
    assert db.get_history("put/vec").column("value").type == pa.list_(pa.float32(), 3)
    assert db.get("put/text") == "b"

    mixed = pa.table({"key": ["p", "q", "p"], "ts": [T0, T0 + 1, T0 + 2], "value": [1, 2, 3]})
    assert client.put_table(None, mixed) == 3
    assert db.get_history("p").column("value").to_pylist() == [1, 3]
    assert db.get_history("q").column("ts").cast(pa.int64()).to_pylist() == [T0 + 1]


def test_errors_come_back_as_synarrow_errors(client: FlightClient) -> None:
    with pytest.raises(KeyNotFoundError, match="'nope' not found"):
        client.history("nope")
    with pytest.raises(SQLError, match="query failed"):
        client.sql("SELEC 1")
    with pytest.raises(InvalidValueError, match="'value' column"):
        client.put_table("x", pa.table({"v": [1.0]}))
    with pytest.raises(synarrow.SynaError, match="unknown action"):
        client._action("explode")
    with pytest.raises(InvalidValueError, match="nulls"):
        client.put_table("holes", pa.table({"value": [1.0, None]}))


def test_actions(client: FlightClient, db: synarrow.SynaDB) -> None:
    assert client.stats()["keys"] == 3
    assert client.compact()["keys"] == 3
    assert db.stats()["tail_entries"] == 0
    assert client.delete("name") is True
    assert client.delete("name") is False
    assert client.keys() == ["sensor/big", "sensor/small"]


def test_readonly_server(db: synarrow.SynaDB, tmp_path: Path) -> None:
    db.sync()
    with synarrow.SynaDB(db.path, readonly=True) as ro:
        srv = FlightServer(ro)  # a read-only handle: no lock, next to the writer
        try:
            assert srv.readonly
            with FlightClient(srv.location, timeout=TIMEOUT) as c:
                assert c.history("sensor/small").num_rows == 3
                with pytest.raises(ReadOnlyError):
                    c.append_batch("x", [1.0])
                with pytest.raises(ReadOnlyError):
                    c.compact()
        finally:
            srv.stop()


def test_serve_in_thread_and_stop(db: synarrow.SynaDB) -> None:
    with FlightServer(db).serve_in_thread() as srv, FlightClient(srv.location, timeout=5) as c:
        assert c.keys("name") == ["name"]

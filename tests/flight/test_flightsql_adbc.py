"""ADBC's Flight SQL driver (the Go-built client every ADBC language binding uses) against a
real ``synarrow serve``: queries, parameters, metadata, ingest, TLS and authentication."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from _serve import TOKEN, Served, self_signed, start_server

import synarrow

adbc_dbapi = pytest.importorskip("adbc_driver_flightsql.dbapi")
adbc_manager = pytest.importorskip("adbc_driver_manager")

T0 = 1_700_000_000_000_000
N = 5000
AUTH = {"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("adbc") / "served.db"
    with synarrow.SynaDB(path, config=synarrow.DbConfig(sync_on_write=False)) as db:
        db.append_batch("sensor/1", np.sin(np.arange(N) / 50.0), timestamps=T0 + np.arange(N))
        db.append_batch("sensor/2", np.arange(10.0), timestamps=T0 + np.arange(10))
        db.compact()
        db.append("sensor/2", 99.0, timestamp=T0 + 100)  # a log tail beside the columnar data
        db.append("name", "pump-7")
    return path


@pytest.fixture(scope="module")
def server(db_path: Path) -> Iterator[Served]:
    served = start_server(db_path, "--token", TOKEN)
    yield served
    served.stop()


@pytest.fixture
def conn(server: Served) -> Iterator[object]:
    with adbc_dbapi.connect(server.location, db_kwargs=AUTH, autocommit=True) as c:
        yield c


def fetch(conn: object, query: str, parameters: object = None) -> pa.Table:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(query, parameters)
        return cur.fetch_arrow_table()


def test_statement_query(conn: object) -> None:
    got = fetch(conn, 'SELECT ts, value FROM "sensor/1" ORDER BY ts')
    assert got.num_rows == N
    assert got.column("value").to_numpy().tolist() == np.sin(np.arange(N) / 50.0).tolist()
    ts = got.column("ts").cast(pa.int64()).to_numpy()
    assert (ts == T0 + np.arange(N)).all()
    agg = fetch(conn, "SELECT key, count(*) AS n FROM history GROUP BY key ORDER BY key")
    assert agg.to_pydict() == {"key": ["name", "sensor/1", "sensor/2"], "n": [1, N, 11]}
    assert fetch(conn, "SELECT value FROM latest WHERE key = 'sensor/2'").to_pylist() == [
        {"value": 99.0}
    ]


def test_whole_key_query_matches_duckdb(conn: object) -> None:
    # SELECT * of one key is answered from the stored history; it must equal DuckDB's answer.
    for key in ("sensor/1", "sensor/2", "name"):
        fast = fetch(conn, f'SELECT * FROM "{key}"')
        duck = fetch(conn, f'SELECT ts, value FROM "{key}" WHERE true')
        assert fast.schema == duck.schema
        assert fast.equals(duck)


def test_parameters(conn: object) -> None:
    got = fetch(
        conn, "SELECT count(*) AS n FROM history WHERE key = ? AND value > ?", ("sensor/2", 4.5)
    )
    assert got.column("n").to_pylist() == [6]  # 5..9 and the 99 of the log tail
    again = fetch(conn, "SELECT ? + 1 AS x, ? AS s", (41, "text"))
    assert again.to_pylist() == [{"x": 42, "s": "text"}]


def test_prepared_statement_reused(conn: object) -> None:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        query = "SELECT max(value) AS m FROM history WHERE key = ?"
        cur.execute(query, ("sensor/2",))
        assert cur.fetch_arrow_table().column("m").to_pylist() == [99.0]
        cur.execute(query, ("sensor/1",))
        assert cur.fetch_arrow_table().column("m").to_pylist() == [pytest.approx(1.0, abs=1e-3)]


def test_get_objects_lists_views_and_keys(conn: object) -> None:
    objects = conn.adbc_get_objects().read_all().to_pylist()  # type: ignore[attr-defined]
    assert [c["catalog_name"] for c in objects] == ["temp"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["main"]
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    assert sorted(tables) == ["history", "latest", "name", "sensor/1", "sensor/2"]
    assert tables["history"]["table_type"] == "VIEW"
    assert tables["sensor/1"]["table_type"] == "TABLE"
    assert [c["column_name"] for c in tables["sensor/1"]["table_columns"]] == ["ts", "value"]
    only = conn.adbc_get_objects(table_name_filter="sensor%").read_all().to_pylist()  # type: ignore[attr-defined]
    names = [t["table_name"] for t in only[0]["catalog_db_schemas"][0]["db_schema_tables"]]
    assert names == ["sensor/1", "sensor/2"]


def test_table_schema_types_and_info(conn: object) -> None:
    schema = conn.adbc_get_table_schema("sensor/1")  # type: ignore[attr-defined]
    assert schema.names == ["ts", "value"]
    assert schema.field("value").type == pa.float64()
    assert pa.types.is_timestamp(schema.field("ts").type)
    assert conn.adbc_get_table_schema("name").field("value").type == pa.large_utf8()  # type: ignore[attr-defined]
    history = conn.adbc_get_table_schema("history")  # type: ignore[attr-defined]
    assert history.names[:3] == ["key", "ts", "value"]
    assert conn.adbc_get_table_types() == ["TABLE", "VIEW"]  # type: ignore[attr-defined]
    info = conn.adbc_get_info()  # type: ignore[attr-defined]
    assert info["vendor_name"] == "synarrow"
    assert info["vendor_version"] == synarrow.__version__


def test_sql_errors_and_sandbox(conn: object, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("a,b\n1,2\n")
    with pytest.raises(adbc_manager.Error, match="disabled"):
        fetch(conn, f"SELECT * FROM read_csv('{secret}')")
    with pytest.raises(adbc_manager.Error, match="not allowed"):
        fetch(conn, f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
    with pytest.raises(adbc_manager.Error, match="not allowed"):
        fetch(conn, "CREATE TABLE t AS SELECT 1")
    with pytest.raises(adbc_manager.Error, match="does not exist"):
        fetch(conn, "SELECT * FROM no_such_table")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]


def test_unauthenticated_adbc_is_refused(server: Served) -> None:
    with (
        adbc_dbapi.connect(server.location, autocommit=True) as c,
        pytest.raises(adbc_manager.Error, match=r"(?i)unauthenticated|Bearer"),
    ):
        fetch(c, "SELECT 1")
    bad = {"adbc.flight.sql.authorization_header": "Bearer wrong-token-123"}
    with (
        adbc_dbapi.connect(server.location, db_kwargs=bad, autocommit=True) as c,
        pytest.raises(adbc_manager.Error, match=r"(?i)unauthenticated|Bearer"),
    ):
        fetch(c, "SELECT 1")


def test_ingest_appends_all_or_nothing(serve: Callable[..., Served], tmp_path: Path) -> None:
    path = tmp_path / "ingest.db"
    with synarrow.SynaDB(path) as db:
        db.append("old", 1.0)
    served = serve(path, "--token", TOKEN)
    ts = pa.array(T0 + np.arange(3), pa.timestamp("us", tz="UTC"))
    one = pa.table({"ts": ts, "value": [1.0, 2.0, 3.0]})
    with adbc_dbapi.connect(served.location, db_kwargs=AUTH, autocommit=True) as c:
        with c.cursor() as cur:
            assert cur.adbc_ingest("new", one, mode="create") == 3
            with pytest.raises(adbc_manager.Error, match="already exists"):
                cur.adbc_ingest("new", one, mode="create")
            assert cur.adbc_ingest("new", one, mode="append") == 3
            with pytest.raises(adbc_manager.Error, match="does not exist"):
                cur.adbc_ingest("missing", one, mode="append")
            with pytest.raises(adbc_manager.Error, match="replace"):
                cur.adbc_ingest("old", one, mode="replace")
            many = pa.table({"key": ["k1", "k2", "k1"], "ts": ts, "value": [10.0, 20.0, 30.0]})
            assert cur.adbc_ingest("history", many, mode="append") == 3
            bad = pa.table({"key": ["k3", ""], "value": [1.0, 2.0]})  # an empty key
            with pytest.raises(adbc_manager.Error, match="empty"):
                cur.adbc_ingest("history", bad, mode="append")
        assert fetch(c, 'SELECT count(*) AS n FROM "new"').column("n").to_pylist() == [6]
    served.stop()
    with synarrow.SynaDB(path, readonly=True) as db:
        assert db.keys() == ["k1", "k2", "new", "old"]  # no k3: the bad ingest wrote nothing
        assert db.get_history("k1").column("value").to_pylist() == [10.0, 30.0]
        assert db.get_history("old").column("value").to_pylist() == [1.0]


def test_adbc_over_tls(serve: Callable[..., Served], db_path: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    served = serve(
        db_path, "--readonly", "--token", TOKEN, "--tls-cert", str(cert), "--tls-key", str(key)
    )
    kwargs = {**AUTH, "adbc.flight.sql.client_option.tls_root_certs": cert.read_text()}
    with adbc_dbapi.connect(served.location, db_kwargs=kwargs, autocommit=True) as c:
        assert fetch(c, 'SELECT count(*) AS n FROM "sensor/1"').column("n").to_pylist() == [N]
        with c.cursor() as cur, pytest.raises(adbc_manager.Error, match="read-only"):
            cur.adbc_ingest("x", pa.table({"value": [1.0]}), mode="create")


def test_ticket_serves_twice_and_handles_are_checked(server: Served) -> None:
    import pyarrow.flight as flight

    from synarrow.flightsql import messages as m

    client = flight.connect(server.location)
    opts = flight.FlightCallOptions(
        timeout=60, headers=[(b"authorization", f"Bearer {TOKEN}".encode())]
    )
    try:
        cmd = m.pack(m.new("CommandStatementQuery", query="SELECT count(*) AS n FROM history"))
        info = client.get_flight_info(flight.FlightDescriptor.for_command(cmd), opts)
        ticket = info.endpoints[0].ticket
        # The first read is the result kept by GetFlightInfo, the second runs the query again.
        first = client.do_get(ticket, opts).read_all()
        second = client.do_get(ticket, opts).read_all()
        assert first.equals(second) and first.column("n").to_pylist() == [N + 12]
        forged = m.pack(m.new("TicketStatementQuery", statement_handle=b"SELECT 1"))
        with pytest.raises(flight.FlightServerError, match="statement handle"):
            client.do_get(flight.Ticket(forged), opts).read_all()
    finally:
        client.close()

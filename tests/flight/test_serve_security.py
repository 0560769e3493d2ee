"""``synarrow serve`` as an attacker on the same machine meets it: auth, sandbox, limits, stop.

Every test talks to a real server subprocess on 127.0.0.1 through real Flight clients.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from _serve import TOKEN, Served, self_signed

import synarrow
from synarrow.errors import InvalidValueError, QueryTimeoutError, ReadOnlyError
from synarrow.flight import FlightClient, encode_ticket
from synarrow.flightsql import messages as m
from synarrow.sql import SQLError

CALL_TIMEOUT = 60.0
SLOW = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"


def make_db(path: Path) -> Path:
    with synarrow.SynaDB(path, config=synarrow.DbConfig(sync_on_write=False)) as db:
        db.append_batch(
            "sensor/1", np.arange(100.0), timestamps=1_700_000_000_000_000 + np.arange(100)
        )
        db.append("name", "pump-7")
    return path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return make_db(tmp_path / "served.db")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    p = tmp_path / "outside"
    p.mkdir()
    (p / "secret.txt").write_text("a,b\n1,2\n")
    return p


def attacks(outside: Path) -> list[str]:
    secret = outside / "secret.txt"
    return [
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM read_text('{secret}')",
        f"COPY (SELECT 1) TO '{outside / 'copied.csv'}'",
        f"ATTACH '{outside / 'attached.duckdb'}' AS other",
        f"EXPORT DATABASE '{outside / 'exported'}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "CREATE TABLE t AS SELECT 1",
    ]


def client(served: Served, **kwargs: object) -> FlightClient:
    return FlightClient(served.location, timeout=CALL_TIMEOUT, token=TOKEN, **kwargs)  # type: ignore[arg-type]


def test_unauthenticated_calls_are_refused(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN)
    raw = flight.connect(served.location)
    try:
        opts = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(raw.list_flights(b"", opts))
        with pytest.raises(flight.FlightUnauthenticatedError):
            raw.do_get(flight.Ticket(encode_ticket(key="sensor/1")), opts).read_all()
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(raw.do_action(flight.Action("delete", b"sensor/1"), opts))
        wrong = flight.FlightCallOptions(
            timeout=CALL_TIMEOUT, headers=[(b"authorization", b"Bearer not-the-token")]
        )
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(raw.list_flights(b"", wrong))
    finally:
        raw.close()
    with client(served) as c:
        assert c.keys() == ["name", "sensor/1"]  # nothing was deleted


def test_token_file(serve: Callable[..., Served], db_path: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    served = serve(db_path, "--token-file", str(token_file))
    with client(served) as c:
        assert c.history("sensor/1").num_rows == 100


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_open_host_without_auth_exits_non_zero(tmp_path: Path, host: str) -> None:
    path = tmp_path / "never.db"
    result = subprocess.run(
        [sys.executable, "-m", "synarrow.cli", "serve", str(path), "--host", host, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "without authentication" in result.stderr
    assert not path.exists()


def test_every_entry_point_is_sandboxed(
    serve: Callable[..., Served], db_path: Path, outside: Path
) -> None:
    served = serve(db_path, "--token", TOKEN)
    with client(served) as c:
        opts = c.options
        for query in attacks(outside):
            with pytest.raises(SQLError):
                c.sql(query)
            cmd = flight.FlightDescriptor.for_command(encode_ticket(sql=query))
            with pytest.raises(flight.FlightError):
                c.client.get_flight_info(cmd, opts)
            # pyarrow's get_schema reports server errors as ArrowException, not FlightError.
            with pytest.raises(pa.ArrowException, match=r"query failed|not allowed") as err:
                c.client.get_schema(cmd, opts)
            assert "1,2" not in str(err.value) and "sql.py" not in str(err.value)
            fsql = flight.FlightDescriptor.for_command(
                m.pack(m.new("CommandStatementQuery", query=query))
            )
            with pytest.raises(flight.FlightError):
                c.client.get_flight_info(fsql, opts)
            ticket = m.pack(m.new("TicketStatementQuery", statement_handle=query.encode()))
            with pytest.raises(flight.FlightError):
                c.client.do_get(flight.Ticket(ticket), opts).read_all()
        # The views still answer on the same server.
        assert c.sql("SELECT count(*) AS n FROM history").column("n").to_pylist() == [101]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_timeout_interrupts_and_others_are_answered(
    serve: Callable[..., Served], db_path: Path
) -> None:
    served = serve(db_path, "--token", TOKEN, "--query-timeout", "1")
    outcome: dict[str, object] = {}
    slow_done = threading.Event()

    def slow() -> None:
        with client(served) as c:
            try:
                c.sql(SLOW)
            except Exception as exc:
                outcome["slow"] = exc
            slow_done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        with client(served) as c:
            # Answered while the slow query still holds its own session.
            assert c.sql("SELECT 42 AS x").column("x").to_pylist() == [42]
            outcome["fast_before_slow"] = not slow_done.is_set()
    finally:
        thread.join(timeout=CALL_TIMEOUT)
    assert outcome["fast_before_slow"] is True
    assert isinstance(outcome["slow"], QueryTimeoutError)
    with client(served) as c:  # the server is still serving
        assert c.sql("SELECT 1 AS one").num_rows == 1


def test_sigterm_stops_promptly_during_a_query(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN, "--query-timeout", "0")
    started = threading.Event()
    errors: list[BaseException] = []

    def slow() -> None:
        with client(served) as c:
            started.set()
            try:
                c.sql(SLOW)
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    started.wait(CALL_TIMEOUT)
    with client(served) as c:  # the slow query is in flight once this has been answered
        c.stats()
    served.proc.send_signal(signal.SIGTERM)
    # Bounded, not timed: without the interrupt the cross join would run for hours.
    assert served.proc.wait(timeout=30) == 0
    thread.join(timeout=CALL_TIMEOUT)
    assert errors  # the running query was cancelled, not completed


def test_over_cap_batch_is_refused(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN, "--max-batch-mb", "1")
    with client(served) as c:
        big = pa.table({"value": np.zeros(1 << 18)})  # 2 MiB in one batch
        with pytest.raises(InvalidValueError, match="over this server's limit"):
            c.put_table("big", big, batch_rows=1 << 18)
        assert "big" not in c.keys()
        # Under the cap, the same data in small batches goes in.
        assert c.put_table("big", big, batch_rows=1 << 15) == 1 << 18


def test_oversized_ticket_is_refused(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN)
    with client(served) as c:
        ticket = flight.Ticket(encode_ticket(sql="SELECT 1 -- " + "x" * (2 << 20)))
        with pytest.raises(flight.FlightError, match="limit"):
            c.client.do_get(ticket, c.options).read_all()


def test_multi_key_put_is_all_or_nothing(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN)
    with client(served) as c:
        good = pa.table({"key": ["a", "b"], "value": [1.0, 2.0]})
        bad = pa.table({"key": ["c", ""], "value": [3.0, 4.0]})  # an empty key is invalid
        descriptor = flight.FlightDescriptor.for_command(b"")
        writer, acks = c.client.do_put(descriptor, good.schema, c.options)
        with pytest.raises(flight.FlightError, match="keys must not be empty"):
            try:
                writer.write_table(good)
                writer.write_table(bad)
                writer.done_writing()
                while acks.read() is not None:
                    pass
            finally:
                writer.close()
        assert c.keys() == ["name", "sensor/1"]
        # The good rows alone are appended, and acknowledged as committed.
        assert c.put_table(None, good) == 2
        assert c.keys() == ["a", "b", "name", "sensor/1"]


def test_readonly_refuses_writes(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN, "--readonly")
    with client(served) as c:
        with pytest.raises(ReadOnlyError):
            c.append_batch("x", [1.0])
        with pytest.raises(ReadOnlyError):
            c.delete("sensor/1")
        with pytest.raises(ReadOnlyError):
            c.compact()
        ingest = m.pack(m.new("CommandStatementIngest", table="x"))
        writer, _ = c.client.do_put(
            flight.FlightDescriptor.for_command(ingest),
            pa.schema([("value", pa.float64())]),
            c.options,
        )
        with pytest.raises(flight.FlightUnauthorizedError):
            writer.write_table(pa.table({"value": [1.0]}))
            writer.done_writing()
            writer.close()
        assert c.keys() == ["name", "sensor/1"]
        assert c.stats()["keys"] == 2


def test_tls_with_a_self_signed_certificate(
    serve: Callable[..., Served], db_path: Path, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    served = serve(db_path, "--token", TOKEN, "--tls-cert", str(cert), "--tls-key", str(key))
    assert served.location.startswith("grpc+tls://127.0.0.1:")
    with client(served, tls_root_certs=cert.read_bytes()) as c:
        assert c.history("sensor/1").num_rows == 100
    # A client that does not trust the certificate cannot talk to it.
    with (
        FlightClient(served.location, timeout=CALL_TIMEOUT, token=TOKEN) as c,
        pytest.raises(flight.FlightUnavailableError),
    ):
        c.client.list_actions(c.options)
    # Plain TCP to the TLS port fails too.
    plain = served.location.replace("grpc+tls://", "grpc://")
    with (
        FlightClient(plain, timeout=CALL_TIMEOUT, token=TOKEN) as c,
        pytest.raises(flight.FlightUnavailableError),
    ):
        c.client.list_actions(c.options)


def test_stats_action_is_json(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN)
    with client(served) as c:
        result = list(c.client.do_action(flight.Action("stats", b""), c.options))
        assert json.loads(result[0].body.to_pybytes())["keys"] == 2


def test_printed_address_is_the_one_listened_on(
    serve: Callable[..., Served], db_path: Path
) -> None:
    served = serve(db_path, "--host", "0.0.0.0", "--token", TOKEN)
    assert served.location.startswith("grpc://0.0.0.0:")
    port = served.location.rsplit(":", 1)[1]
    with FlightClient(f"grpc://127.0.0.1:{port}", timeout=CALL_TIMEOUT, token=TOKEN) as c:
        assert c.keys() == ["name", "sensor/1"]


def test_put_refuses_bad_values_whole(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN)
    with client(served) as c:
        bad_tables = [
            pa.table({"value": pa.array([1.0, None])}),  # a null in a batch
            pa.table({"value": pa.array([1, 2**63], pa.uint64())}),  # beyond int64
            pa.table(
                {
                    "ts": pa.array([1, 1001], pa.timestamp("ns", tz="UTC")),  # not whole us
                    "value": [1.0, 2.0],
                }
            ),
        ]
        for bad in bad_tables:
            with pytest.raises(synarrow.SynaError):
                c.put_table("k", bad)
        assert "k" not in c.keys()


def test_multi_key_put_in_any_row_order(serve: Callable[..., Served], db_path: Path) -> None:
    served = serve(db_path, "--token", TOKEN)
    with client(served) as c:
        sorted_rows = pa.table(
            {"key": ["a", "a", "b", "c", "c"], "value": [1.0, 2.0, 3.0, 4.0, 5.0]}
        )
        mixed = pa.table({"key": ["x", "y", "x", "z", "y"], "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
        assert c.put_table(None, sorted_rows) == 5
        assert c.put_table(None, mixed) == 5
        got = {k: c.history(k).column("value").to_pylist() for k in "abcxyz"}
    assert got == {
        "a": [1.0, 2.0],
        "b": [3.0],
        "c": [4.0, 5.0],
        "x": [1.0, 3.0],
        "y": [2.0, 5.0],
        "z": [4.0],
    }


def test_sigterm_with_a_client_that_stopped_reading(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    path = tmp_path / "big.db"
    with synarrow.SynaDB(path, config=synarrow.DbConfig(sync_on_write=False)) as db:
        db.append_batch("big", np.random.default_rng(0).random(6_000_000))
        db.compact()
    served = serve(path, "--token", TOKEN)
    raw = flight.connect(served.location)
    try:
        opts = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
        stream = raw.do_get(flight.Ticket(encode_ticket(key="big")), opts)
        stream.read_chunk()  # one batch, then the client stops reading
        with client(served) as c:
            c.stats()
        served.proc.send_signal(signal.SIGTERM)
        # Bounded, not timed: without leaving, gRPC would wait for this client forever.
        assert served.proc.wait(timeout=30) == 0
        assert "stopped reading" in served.proc.stderr.read()
    finally:
        raw.close()

"""The ``ts`` range a query reads of a per-key view, so only that slice is registered.

DuckDB scans a registered Arrow table in full and filters afterwards (it pushes filters
only into a ``pyarrow.dataset``, whose in-memory scanner still evaluates them on every
row), so ``SELECT ... FROM "sensor/1" WHERE ts >= X AND ts < Y`` would touch the whole
history. Instead, before registering a key's view for a query, :func:`key_range` reads the
query's syntax tree (DuckDB's own parser, ``json_serialize_sql``) and finds the bounds
that every row read from the key must satisfy; the view is then registered as the
zero-copy slice of the ordered history in those bounds (binary search), and DuckDB still
applies the query's own ``WHERE`` to it.

A bound is taken only where it cannot change the result. The key must be named exactly
once in the query (not in a join: directly in the ``FROM`` of one ``SELECT``), and the
bound must be a top-level ``AND`` term of that ``SELECT``'s ``WHERE``: ``ts`` (or
``alias.ts``) compared (``<``, ``<=``, ``=``, ``>=``, ``>``, ``BETWEEN``) with a constant:
a literal, a cast of one (``TIMESTAMP '2024-05-01'``, ``'2024-05-01'::TIMESTAMPTZ``),
``make_timestamp(...)`` / ``to_timestamp(...)`` of constants, or ``+`` / ``-`` of such
terms (``TIMESTAMP '2024-05-01' + INTERVAL 1 DAY``). Bounds are widened by a microsecond
(by a day for time-zone-aware constants, whose comparison with the naive UTC ``ts`` goes
through the session time zone), so rounding never cuts a row. Anything else (``OR``,
parameters, ``now()``, subqueries, a key named twice, the ``history`` view, which is
registered once per database version for all queries) reads the whole history, filtered
by DuckDB as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import duckdb

from synarrow.errors import SynaError
from synarrow.inputs import to_time_bound

__all__ = ["key_range", "may_bound_ts"]

_DAY_US = 86_400_000_000
# Deterministic functions of constants (``INTERVAL 1 DAY`` parses as to_days(trunc(1)) ...).
_CONSTANT_FUNCTIONS = {
    "make_timestamp", "make_timestamptz", "to_timestamp", "make_date", "+", "-", "trunc",
    "to_weeks", "to_days", "to_hours", "to_minutes", "to_seconds", "to_milliseconds",
    "to_microseconds",
}  # fmt: skip
_COMPARE = {
    "COMPARE_GREATERTHANOREQUALTO": ">=",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_EQUAL": "=",
}
_INT_KINDS = {"INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "SMALLINT", "TINYINT"}
_TIME_TYPES = {"TIMESTAMP", "TIMESTAMPTZ", "DATE", "DATETIME", "TIMESTAMP WITH TIME ZONE"}
_FLIP = {">=": "<=", ">": "<", "<": ">", "<=": ">=", "=": "="}


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON tree, depth first."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def _is_table(node: dict[str, Any], folded: str) -> bool:
    return node.get("type") == "BASE_TABLE" and str(node.get("table_name", "")).lower() == folded


def _is_ts(expr: Any, names: set[str]) -> bool:
    if not isinstance(expr, dict) or expr.get("class") != "COLUMN_REF":
        return False
    parts = [str(p).lower() for p in expr.get("column_names", [])]
    return parts == ["ts"] or (len(parts) == 2 and parts[1] == "ts" and parts[0] in names)


def _is_constant(expr: Any) -> bool:
    if not isinstance(expr, dict):
        return False
    kind = expr.get("class")
    if kind == "CONSTANT":
        return True
    if kind == "CAST":
        return not expr.get("try_cast") and _is_constant(expr.get("child"))
    if kind == "FUNCTION" and str(expr.get("function_name", "")).lower() in _CONSTANT_FUNCTIONS:
        given = expr.get("children") or expr.get("arguments") or []
        args = [
            a.get("expression") if isinstance(a, dict) and "expression" in a else a for a in given
        ]
        return bool(args) and all(_is_constant(a) for a in args)
    return False


# Evaluates a constant ``x`` (NULL stands for it): its microseconds and its type.
_PROBE = "SELECT epoch_us(TRY_CAST(NULL AS TIMESTAMP)) AS u, typeof(NULL) AS t"
_probe_cache: list[list[dict[str, Any]]] = []


def _probe(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The serialized select list of :data:`_PROBE` (parsed once per process)."""
    if not _probe_cache:
        rows = con.execute("SELECT json_serialize_sql(?)", [_PROBE]).fetchall()
        _probe_cache.append(json.loads(rows[0][0])["statements"][0]["node"]["select_list"])
    return _probe_cache[0]


def _substitute(tree: Any, expr: dict[str, Any]) -> Any:
    """A copy of ``tree`` with every constant (the probe's NULLs) replaced by ``expr``."""
    if isinstance(tree, dict):
        if tree.get("class") == "CONSTANT":
            return expr
        return {k: _substitute(v, expr) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_substitute(v, expr) for v in tree]
    return tree


def _literal(expr: Any) -> dict[str, Any] | None:
    if isinstance(expr, dict) and expr.get("class") == "CONSTANT":
        literal = expr.get("literal")
        return literal if isinstance(literal, dict) else None
    return None


def _quick(expr: dict[str, Any]) -> tuple[int, bool] | None:
    """The usual constants read without asking DuckDB (a round trip costs about a
    millisecond): ``make_timestamp(<int>)`` exactly, and ISO strings (bare or cast to a
    time type), parsed here and so taken with a day's margin either side."""
    if expr.get("class") == "FUNCTION" and expr.get("function_name") == "make_timestamp":
        args = expr.get("arguments", [])
        literal = _literal(args[0].get("expression")) if len(args) == 1 else None
        if literal is not None and literal.get("kind") in _INT_KINDS:
            return int(literal["text"]), False
        return None
    if expr.get("class") == "CAST":
        type_name = str(expr.get("type_expr", {}).get("type_name", "")).upper()
        if type_name not in _TIME_TYPES or type_name == "DATE":
            # a DATE cast drops the time and the offset: only DuckDB can say which day
            return None
        expr = expr.get("child", {})
    literal = _literal(expr)
    if literal is None or literal.get("kind") != "STRING":
        return None
    try:
        us = to_time_bound(str(literal["text"]))
    except SynaError:
        return None
    return None if us is None else (us, True)


def _micros(
    con: duckdb.DuckDBPyConnection, exprs: list[dict[str, Any]]
) -> list[tuple[int, bool] | None]:
    """Each constant as microseconds of a naive UTC timestamp and whether it has a time
    zone (``None`` where it is no time), evaluated in one query."""
    quick = [_quick(e) for e in exprs]
    if all(q is not None for q in quick):
        return quick
    probe = _probe(con)
    select = [
        {**_substitute(item, expr), "alias": f"{item['alias']}{i}"}
        for i, expr in enumerate(exprs)
        for item in probe
    ]
    node: dict[str, Any] = {
        "type": "SELECT_NODE",
        "modifiers": [],
        "cte_map": {"map": []},
        "select_list": select,
        "from_table": {"type": "EMPTY", "alias": "", "sample": None},
        "where_clause": None,
        "group_expressions": [],
        "group_sets": [],
        "aggregate_handling": "STANDARD_HANDLING",
        "having": None,
        "sample": None,
        "qualify": None,
    }
    statement = json.dumps({"error": False, "statements": [{"node": node, "named_param_map": []}]})
    try:
        rows = con.execute("SELECT * FROM json_execute_serialized_sql(?)", [statement]).fetchall()
    except duckdb.Error:
        return [None] * len(exprs)
    row = rows[0] if len(rows) == 1 else (None,) * (2 * len(exprs))
    out: list[tuple[int, bool] | None] = []
    for i in range(len(exprs)):
        us, kind = row[2 * i], row[2 * i + 1]
        out.append(None if us is None else (int(us), "TIME ZONE" in str(kind).upper()))
    return out


def _terms(where: Any) -> Iterator[dict[str, Any]]:
    """The top-level AND terms of a WHERE clause."""
    if not isinstance(where, dict):
        return
    if where.get("class") == "CONJUNCTION" and where.get("type") == "CONJUNCTION_AND":
        for child in where.get("children", []):
            yield from _terms(child)
    else:
        yield where


def _comparisons(where: Any, names: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(operator, constant expression)`` for each ``ts`` bound among the AND terms."""
    for term in _terms(where):
        kind = term.get("class")
        if kind == "COMPARISON" and term.get("type") in _COMPARE:
            op = _COMPARE[term["type"]]
            left, right = term.get("left"), term.get("right")
            if _is_ts(right, names) and not _is_ts(left, names):
                left, right, op = right, left, _FLIP[op]
            if _is_ts(left, names) and isinstance(right, dict) and _is_constant(right):
                yield op, right
        elif kind == "BETWEEN" and _is_ts(term.get("input"), names):
            for op, side in ((">=", term.get("lower")), ("<=", term.get("upper"))):
                if isinstance(side, dict) and _is_constant(side):
                    yield op, side


# ``ts`` next to a comparison (either side) or BETWEEN: a query without one has no bound,
# and needs no parse (about a millisecond). A miss only means no pushdown.
_MENTION = re.compile(
    r'\bts\b"?\s*(?:[<>]=?|=|between\b)|(?:[<>]=?|=)\s*(?:[\w"]+\.)?"?ts\b', re.IGNORECASE
)


def may_bound_ts(query: str) -> bool:
    """Whether a query may hold a bound on ``ts`` (a cheap test before :func:`key_range`)."""
    return _MENTION.search(query) is not None


def key_range(
    con: duckdb.DuckDBPyConnection, query: str, key: str
) -> tuple[int | None, int | None] | None:
    """``(start, end)`` microseconds (half-open, ``None``: unbounded) that contain every
    row of ``key`` the query can use, or ``None`` if the whole history is needed.

    ``con`` parses the query and evaluates the bounds' constants (with its settings, such
    as the time zone); see the module docstring for what is recognised.
    """
    try:
        rows = con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    except duckdb.Error:
        return None
    tree = json.loads(rows[0][0])
    if tree.get("error"):
        return None
    if any(n.get("sample") for n in _nodes(tree)):
        return None  # TABLESAMPLE / USING SAMPLE draw from the rows before WHERE filters
    folded = key.lower()
    tables = [n for n in _nodes(tree) if _is_table(n, folded)]
    if len(tables) != 1:
        return None
    (table,) = tables
    select = next(
        (
            n
            for n in _nodes(tree)
            if n.get("type") == "SELECT_NODE" and n.get("from_table") is table
        ),
        None,
    )
    if select is None:
        return None
    # Once aliased, only the alias names the table (the key's own name may then be another
    # table's alias, of an outer query for instance).
    names = {str(table["alias"]).lower()} if table.get("alias") else {folded}
    lo: int | None = None
    hi: int | None = None
    bounds = list(_comparisons(select.get("where_clause"), names))
    if not bounds:
        return None
    for (op, _), value in zip(bounds, _micros(con, [e for _, e in bounds])):
        if value is None:
            continue
        us, zoned = value
        margin = _DAY_US if zoned else 1
        if op in (">=", ">", "="):
            lo = us - margin if lo is None else max(lo, us - margin)
        if op in ("<=", "<", "="):
            hi = us + margin if hi is None else min(hi, us + margin)
    if lo is None and hi is None:
        return None
    return lo, hi

"""``where=`` predicates of a vector store: SQL over its documents' metadata, run by DuckDB.

A predicate is the body of a ``WHERE`` clause over one row per document: ``key``,
``inserted_at`` (``TIMESTAMP``, UTC) and the metadata fields (timestamps as UTC
``TIMESTAMP``). It is evaluated in a sandboxed DuckDB session the store owns (no files, no
extensions, read-only statements), on the store's Arrow data without copying it.

Before DuckDB sees it a predicate must be a single expression: no comments, no ``;``,
parentheses balanced (so it cannot close the ``WHERE (...)`` it is put in), and its type
must be ``BOOLEAN``. Anything else, a missing field included, raises
:class:`~synarrow.errors.InvalidArgumentError` naming the problem.

>>> import pyarrow as pa
>>> rows = pa.table({"__label": pa.array([0, 1, 2], pa.uint64()), "year": [2023, 2024, 2025]})
>>> with MetadataFilter() as f:
...     f.matching(rows, "year >= 2024", version=1).tolist()
[1, 2]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from synarrow.errors import InvalidArgumentError, SQLError

__all__ = ["VIEW", "MetadataFilter", "check_where"]

#: The name of the documents' table in predicates' session (not needed in the predicate).
VIEW = "metadata"
_CACHE = 32
_MAX_WHERE = 64 * 1024


def check_where(where: object) -> str:
    """``where`` if it is one SQL expression that stays inside its parentheses."""
    if not isinstance(where, str):
        raise InvalidArgumentError(f"where must be a str (a SQL predicate), got {where!r:.60}")
    if not where.strip():
        raise InvalidArgumentError('where is empty: give a SQL predicate such as "year > 2020"')
    if len(where) > _MAX_WHERE:
        raise InvalidArgumentError(f"where of {len(where)} chars is over {_MAX_WHERE}")
    try:
        tokens = duckdb.tokenize(where)
    except (duckdb.Error, RuntimeError) as exc:
        raise InvalidArgumentError(f"where={where!r:.200} cannot be read: {exc}") from exc
    depth = 0
    for i, (offset, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(where)
        text = where[offset:end].strip()
        if kind == duckdb.token_type.comment:
            raise InvalidArgumentError(f"where={where!r:.200} holds a comment")
        if kind != duckdb.token_type.operator:
            continue
        for ch in text:
            if ch == ";":
                raise InvalidArgumentError(
                    f"where={where!r:.200} holds ';': give one predicate, not statements"
                )
            depth += (ch == "(") - (ch == ")")
            if depth < 0:
                raise InvalidArgumentError(
                    f"where={where!r:.200} closes a parenthesis it did not open"
                )
    if depth:
        raise InvalidArgumentError(f"where={where!r:.200} leaves a parenthesis open")
    return where


class MetadataFilter:
    """Finds the labels of the documents a predicate admits; caches recent answers.

    ``matching(table, where, version)`` answers from the cache when the same predicate was
    asked of the same ``version`` of the data (the caller's token for "nothing changed").
    """

    def __init__(self) -> None:
        self._session: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, Hashable], np.ndarray] = OrderedDict()

    def matching(self, table: pa.Table, where: str, version: Hashable) -> np.ndarray:
        """The ``__label`` values (uint64) of the rows of ``table`` where ``where`` holds."""
        check_where(where)
        with self._lock:
            hit = self._cache.get((where, version))
            if hit is not None:
                self._cache.move_to_end((where, version))
                return hit
            labels = self._run(table, where)
            self._cache[(where, version)] = labels
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
            return labels

    def _run(self, table: pa.Table, where: str) -> np.ndarray:
        from synarrow.duck import DuckSession

        if self._session is None:
            self._session = DuckSession(read_only=True)
        session = self._session

        def prepare(con: duckdb.DuckDBPyConnection) -> None:
            con.register(VIEW, table)

        fields = [n for n in table.column_names if not n.startswith("__")]
        try:
            with session.lock:
                rel = session.relation(f"SELECT ({where}) AS p FROM {VIEW}", prepare=prepare)
                kind = str(rel.types[0]) if rel is not None else "none"
            if kind not in ("BOOLEAN", '"NULL"', "NULL"):
                raise InvalidArgumentError(
                    f"where={where!r:.200} is a {kind} expression, not a predicate",
                    hint="compare fields, e.g. \"category = 'news' AND year >= 2024\"",
                )
            result = session.query(f"SELECT __label FROM {VIEW} WHERE ({where})", prepare=prepare)
        except SQLError as exc:
            raise InvalidArgumentError(
                f"where={where!r:.200} is not a predicate over the metadata: {exc.message}",
                hint=f"fields: {', '.join(fields) or '(none)'}",
            ) from exc
        column = result.column("__label")
        return (
            column.to_numpy().astype(np.uint64, copy=False)
            if len(column)
            else np.empty(0, np.uint64)
        )

    def close(self) -> None:
        """Close the DuckDB session (a later query opens a new one)."""
        with self._lock:
            self._cache.clear()
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> MetadataFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The one place synarrow creates DuckDB connections: sandboxed, so SQL sees only what we register.

Every connection starts with

* ``enable_external_access = false``: ``read_csv``, ``read_text``, ``glob``, ``COPY ... TO``,
  ``ATTACH``, ``EXPORT DATABASE`` and ``INSTALL`` fail with a permission error; Arrow data
  registered on the connection keeps working;
* extension autoinstall and autoload off (no ``LOAD`` of anything outside the binary);
* ``temp_directory = ''``: a query larger than memory fails instead of spilling into a
  ``.tmp`` folder of the current directory;
* ``lock_configuration = true`` last, so no query can ``SET`` any of this back (nor change
  threads or memory for everyone sharing a server).

A user who wants DuckDB's file functions on a connection of their own asks for it with
``external_access=True`` (``db.duckdb(external_access=True)``); that connection is not locked.
Servers never do.
"""

from __future__ import annotations

from typing import Any

import duckdb

SANDBOX_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "temp_directory": "",
    "lock_configuration": True,
}


def new_connection(*, external_access: bool = False) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection, sandboxed unless ``external_access`` is true.

    >>> con = new_connection()
    >>> con.sql("SELECT 42").fetchall()
    [(42,)]
    """
    if external_access:
        return duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
    return duckdb.connect(config=dict(SANDBOX_CONFIG))


__all__ = ["SANDBOX_CONFIG", "new_connection"]

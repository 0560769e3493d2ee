"""synarrow benchmark suite: ``python -m benchmarks.run [--quick] [--only NAME ...]``.

Compares synarrow with the reference ``synadb`` 1.4.0 and Python's ``sqlite3``
(plus DuckDB and pandas for the SQL figure) in one run on the same data.
Not part of the test suite.
"""

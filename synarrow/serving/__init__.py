"""What a network server over a database needs: authentication, bounded queries, safe puts.

:mod:`~synarrow.serving.auth` (bearer tokens, which hosts need them),
:mod:`~synarrow.serving.query` (a sandboxed session per query, timeouts, streaming) and
:mod:`~synarrow.serving.ingest` (size caps and all-or-nothing appends). The Flight and
Flight SQL servers (:mod:`synarrow.flight`, :mod:`synarrow.flightsql`) are built on them.
"""

__all__: list[str] = []

"""Arrow Flight SQL for synarrow's Flight server: what ADBC, JDBC and BI clients speak.

:mod:`~synarrow.flightsql.messages` builds the protocol's protobuf messages;
:mod:`~synarrow.flightsql.catalog` answers the metadata commands;
:mod:`~synarrow.flightsql.service` handles queries, prepared statements and ingest.
"""

__all__: list[str] = []

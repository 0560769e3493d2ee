"""The append-only binary log: format, codecs, writer, reader, recovery and index rebuild.

This package knows nothing of the layers above it (columnar files, SQL, the user API).
"""

__all__: list[str] = []

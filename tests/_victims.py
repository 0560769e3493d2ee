"""A file outside every database whose bytes and mtime must never change (importable as
``_victims``): the witness of the directory-safety tests."""

from __future__ import annotations

import os
from pathlib import Path


class Victim:
    """Writes ``data`` at ``path`` with a fixed old mtime; :meth:`unchanged` checks both."""

    def __init__(self, path: Path, data: bytes = b"precious bytes, not a database\n") -> None:
        self.path = path
        path.write_bytes(data)
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
        self.data = data
        self.mtime = path.stat().st_mtime_ns

    def unchanged(self) -> bool:
        """Whether the file still holds the same bytes with the same mtime."""
        return self.path.read_bytes() == self.data and self.path.stat().st_mtime_ns == self.mtime

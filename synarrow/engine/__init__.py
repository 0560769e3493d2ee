"""The storage engine behind :class:`~synarrow.SynaDB`, one job per module:

- :mod:`~synarrow.engine.directory`: the database directory (marker, own files, the lock);
- :mod:`~synarrow.engine.recovery`: opening (columnar keys, log replay, torn tails);
- :mod:`~synarrow.engine.engine`: :class:`~synarrow.engine.engine.Engine`, the life of a
  write (the append hot path, batches, tombstones, rotation) and the index reads;
- :mod:`~synarrow.engine.batches`: batch slicing, parallel LZ4 encoding, mapped chunks;
- :mod:`~synarrow.engine.compaction`: when and how the log is folded into columnar files;
- :mod:`~synarrow.engine.snapshot`: :class:`ReadSnapshot`, what every reading layer reads.

The engine imports only the storage modules (``log/``, ``columnar/``, ``fileio``, ``config``,
``errors``, ``inputs``), never a user-facing layer.
"""

from synarrow.engine.snapshot import KeyView, ReadSnapshot

__all__ = ["KeyView", "ReadSnapshot"]

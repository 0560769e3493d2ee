"""The storage engine behind :class:`~synarrow.SynaDB`: opening and recovery, the write path,
rotation, compaction and read snapshots. User-facing layers talk to it through
:class:`~synarrow.engine.snapshot.ReadSnapshot` and the handle's public methods."""

from synarrow.engine.snapshot import KeyView, ReadSnapshot

__all__ = ["KeyView", "ReadSnapshot"]

"""The Arrow side: compaction of the log into memory-mapped Arrow IPC files.

Imports ``synarrow.log``; never the user-facing layers.
"""

__all__: list[str] = []

"""Key states made on first use: the keys of the columnar index stay arrays until touched.

An engine keeps a :class:`~synarrow.log.memtable.KeyState` only for the keys it has used
(read, written, replayed from the log tail) in ``states``; every other key lives only in the
committed :class:`~synarrow.columnar.key_index.KeyIndex`. So opening a compacted database
costs the same whatever its number of keys, and the first use of a key costs a binary search
and the construction of its few slice refs. Operations over every key (``read_snapshot()``
of the whole database, ``stats()``, a full compaction) load the rest first.

Invariant the compaction relies on: a loaded key that is live and has no log tail holds
exactly the slices the committed index lists for it (every change of a history either adds
tail entries or clears the key).
"""

from __future__ import annotations

from typing import cast

from synarrow.columnar.key_index import KeyIndex
from synarrow.log.memtable import BaseChunk, KeyState

__all__ = ["load_all", "load_key", "unloaded_keys"]


def load_key(
    states: dict[str, KeyState], index: KeyIndex, key: str, ties_first: bool
) -> KeyState | None:
    """The state of ``key`` made from the index and kept in ``states``; ``None`` if the
    index lacks it (the caller checked ``states`` first)."""
    if not len(index):
        return None
    try:
        key_bytes = key.encode("utf-8")
    except UnicodeEncodeError:
        return None  # not a key synarrow could have written; the caller validates it
    position = index.find(key_bytes)
    if position < 0:
        return None
    st = KeyState(key, key_bytes, ties_first=ties_first)
    st.set_base(cast("list[BaseChunk]", index.refs(position)))
    states[key] = st  # whole before the lock-free get can see it
    return st


def load_all(states: dict[str, KeyState], index: KeyIndex, ties_first: bool) -> None:
    """Load every key of the index not loaded yet."""
    if states and not unloaded_keys(states, index):
        return
    for key, refs in index.items():
        if key not in states:
            st = KeyState(key, key.encode("utf-8"), ties_first=ties_first)
            st.set_base(cast("list[BaseChunk]", refs))
            states[key] = st


def unloaded_keys(states: dict[str, KeyState], index: KeyIndex) -> list[str]:
    """The keys of the index without a loaded state (all live: the index holds only keys
    that were live when it was written, and a key changed since is loaded)."""
    if not len(index):
        return []
    if not states:
        return index.names()
    return [k for k in index.names() if k not in states]

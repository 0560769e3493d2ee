"""Retention rules: per glob pattern, how old a key's points may get before they expire.

The rules live in the database directory as ``retention.json`` (written atomically, read
without following symlinks, at most :data:`MAX_RETENTION_BYTES`)::

    {"format": 1, "rules": {"sensor/*": 86400000000, "logs/app": 3600000000}}

mapping each pattern (a glob, as ``SynaDB.keys(pattern)`` takes) to a maximum age in
microseconds. A key's cutoff at a moment ``now`` is ``now - max_age`` of the matching rule
with the shortest ``max_age`` (so a stricter rule always wins); points with ``ts < cutoff``
are expired: no read shows them, and compaction drops them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from synarrow.engine import timeline as _timeline
from synarrow.errors import CorruptionError, InvalidArgumentError
from synarrow.fileio import read_bytes, write_atomic
from synarrow.log.memtable import TailChunk

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_RETENTION_BYTES",
    "MAX_RULES",
    "RETENTION_NAME",
    "RetentionRules",
    "check_pattern",
    "load_rules",
    "store_rules",
    "unexpired",
]

#: The retention file in a database directory.
RETENTION_NAME = "retention.json"
#: The largest retention file read (a bigger one is damaged or crafted).
MAX_RETENTION_BYTES = 1 << 20
#: At most this many rules.
MAX_RULES = 1000
#: The longest pattern.
MAX_PATTERN_CHARS = 1000
_FORMAT = 1
_MAX_CACHED = 1 << 17
_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class RetentionRules:
    """An immutable set of rules: pattern -> maximum age in microseconds."""

    rules: Mapping[str, int] = field(default_factory=dict)

    _ages: dict[str, int | None] = field(default_factory=dict, repr=False, compare=False)
    """``max_age`` per key already matched (the rules never change: a new set is made)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def max_age(self, key: str) -> int | None:
        """The shortest ``max_age`` of the rules matching ``key`` (``None``: no rule)."""
        try:
            return self._ages[key]
        except KeyError:
            pass
        ages = [age for pattern, age in self.rules.items() if fnmatch.fnmatchcase(key, pattern)]
        if len(self._ages) >= _MAX_CACHED:
            self._ages.clear()  # bounded, whatever keys readers ask about
        found = self._ages[key] = min(ages) if ages else None
        return found

    def cutoff(self, key: str, now_us: int) -> int | None:
        """The earliest timestamp of ``key`` still visible at ``now_us`` (``None``: all)."""
        age = self.max_age(key)
        return None if age is None else now_us - age

    def with_rule(self, pattern: str, max_age_us: int | None) -> RetentionRules:
        """These rules with ``pattern`` set to ``max_age_us`` (``None``: removed)."""
        check_pattern(pattern)
        rules = dict(self.rules)
        if max_age_us is None:
            rules.pop(pattern, None)
        else:
            if not 0 < max_age_us <= _INT64_MAX:
                raise InvalidArgumentError(f"max_age must be > 0 microseconds, got {max_age_us}")
            rules[pattern] = max_age_us
            if len(rules) > MAX_RULES:
                raise InvalidArgumentError(f"a database holds at most {MAX_RULES} retention rules")
        return RetentionRules(rules)

    def to_json(self) -> bytes:
        """The file's content."""
        body = {"format": _FORMAT, "rules": dict(sorted(self.rules.items()))}
        return (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, what: str = RETENTION_NAME) -> RetentionRules:
        """Parse a retention file; :class:`CorruptionError` naming ``what`` if it is not one."""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptionError(f"{what} is not valid JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("format") != _FORMAT:
            raise CorruptionError(f"{what} is not a format-{_FORMAT} retention file")
        rules = body.get("rules")
        if not isinstance(rules, dict) or len(rules) > MAX_RULES:
            raise CorruptionError(f"{what}: 'rules' must map up to {MAX_RULES} patterns to ages")
        for pattern, age in rules.items():
            bad_pattern = not pattern or len(pattern) > MAX_PATTERN_CHARS
            if bad_pattern or type(age) is not int or not 0 < age <= _INT64_MAX:
                raise CorruptionError(f"{what}: bad rule {pattern!r:.60}: {age!r:.40}")
        return cls(rules)


def check_pattern(pattern: object) -> str:
    """A rule's pattern: a non-empty str of at most :data:`MAX_PATTERN_CHARS` characters."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidArgumentError(
            f"pattern must be a non-empty str of at most {MAX_PATTERN_CHARS} characters, "
            f"got {pattern!r:.60}"
        )
    return pattern


def load_rules(directory: Path) -> RetentionRules:
    """The rules stored in the database at ``directory`` (none if there is no file)."""
    path = directory / RETENTION_NAME
    try:
        raw = read_bytes(path, max_size=MAX_RETENTION_BYTES, what="retention file")
    except FileNotFoundError:
        return RetentionRules()
    except CorruptionError:
        raise
    except OSError as exc:  # not readable as a file synarrow wrote
        raise CorruptionError(f"retention file {path}: {exc.strerror or exc}") from exc
    return RetentionRules.from_json(raw, str(path))


def store_rules(directory: Path, rules: RetentionRules) -> None:
    """Write ``rules`` durably (atomically replacing the file)."""
    write_atomic(directory / RETENTION_NAME, rules.to_json())


def unexpired(parts: list[TailChunk], cutoff: int) -> list[TailChunk] | None:
    """The ordered history ``parts`` without the points before ``cutoff`` (every entry
    kept otherwise), or ``None`` when no point is expired (nothing to drop)."""
    lows = [c.first_ts() if _timeline.in_order(c) else int(c.ts.min()) for c in parts if len(c)]
    if not lows or min(lows) >= cutoff:
        return None
    return _timeline.ordered(parts, duplicates="keep_all", not_before=cutoff)

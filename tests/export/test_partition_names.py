"""Directory names of keys: decoded back to the key by the URI decoding of pyarrow / DuckDB
and by the one-character-per-escape decoding of Hive / Spark; never shared by two keys."""

from __future__ import annotations

import re
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from synarrow.layout import partition_dir, partition_value

# Keys are non-empty str that encode to UTF-8 (no lone surrogates).
KEYS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def spark_decode(text: str) -> str:
    """Spark's ExternalCatalogUtils.unescapePathName: each %XX is one character."""
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


@given(KEYS)
def test_every_engine_decodes_the_key(key: str) -> None:
    name = partition_value(key)
    assert unquote(name, errors="strict") == key
    assert spark_decode(name) == key
    assert "/" not in name and "\x00" not in name and "=" not in name
    assert partition_dir(key) == "key=" + name


@given(KEYS, KEYS)
def test_two_keys_never_share_a_directory(a: str, b: str) -> None:
    if a != b:
        assert partition_value(a) != partition_value(b)


def test_examples() -> None:
    assert partition_dir("Zürich") == "key=Zürich"
    assert partition_dir("k\x00a") == "key=k%00a"
    assert partition_dir("sensor/1") == "key=sensor%2F1"
    assert partition_dir("100%") == "key=100%25"
    assert partition_dir("a b=c") == "key=a b%3Dc"

"""Random byte flips anywhere in a compacted store's columnar files (hypothesis).

Each example damages a fresh copy with one to three flips at random files, offsets and bit
masks, and reads everything back in this process: the reading must equal the pristine one
or raise CorruptionError, and ``synarrow check`` must report the damage (every columnar
byte is covered by a checksum). The default run keeps the example count small; the slow
marker runs a larger sweep.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest
from columnar_damage import make_store, outcome, read_everything
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synarrow.check import check_database

_STORE = tempfile.TemporaryDirectory(prefix="synarrow-flips-")
PRISTINE = make_store(Path(_STORE.name) / "p.db")
READING = read_everything(PRISTINE)
FILES = sorted(f.name for f in (PRISTINE / "columnar").iterdir())
SIZES = {name: (PRISTINE / "columnar" / name).stat().st_size for name in FILES}
_counter = itertools.count()

flips = st.lists(
    st.tuples(st.sampled_from(FILES), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    min_size=1,
    max_size=3,
)


def _check_flips(changes: list[tuple[str, float, int]], policy: str) -> None:
    target = Path(_STORE.name) / f"case{next(_counter)}"
    shutil.copytree(PRISTINE, target)
    try:
        damaged = {}
        for name, where, mask in changes:
            f = target / "columnar" / name
            data = bytearray(f.read_bytes())
            data[int(where * SIZES[name])] ^= mask
            f.write_bytes(bytes(data))
            damaged[name] = data != (PRISTINE / "columnar" / name).read_bytes()
        result = outcome(target, READING, policy)
        assert result in ("equal", "corruption"), (changes, result)
        if any(damaged.values()):
            assert not check_database(target).ok, changes
    finally:
        shutil.rmtree(target, ignore_errors=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=flips, policy=st.sampled_from(["first-read", "open"]))
def test_random_flips_read_the_value_or_corruption(changes: list, policy: str) -> None:
    _check_flips(changes, policy)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=flips, policy=st.sampled_from(["first-read", "open"]))
def test_random_flips_read_the_value_or_corruption_sweep(changes: list, policy: str) -> None:
    _check_flips(changes, policy)

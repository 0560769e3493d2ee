"""One database with awkward keys and every value type, exported once for the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from export_data import T0, Exported, fill

import synarrow


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """The database, compacted, then a little log tail; exported to Parquet and Arrow."""
    base = tmp_path_factory.mktemp("engines")
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    with synarrow.SynaDB(base / "src.db", config=cfg) as db:
        expected = fill(db)
        db.compact()
        db.append("Zürich", 99.0, timestamp=T0 + 10**9)
        expected["Zürich"].append((T0 + 10**9, "float", 99.0))
        db.export_dataset(base / "parquet")
        db.export_dataset(base / "arrow", format="arrow")
    yield Exported(base / "src.db", base / "parquet", base / "arrow", expected)

"""Spark and Ray Data read the Hive-partitioned Parquet export: every key, row and value.

These engines are the ``engines`` extra (``pip install -e '.[engines]'``) and the ``engines``
marker (``-m engines`` runs only them). Without the packages (or Java, for Spark) they skip,
except in CI (``CI`` set), where they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from engine_rows import rows_by_key, table_rows
from export_data import Exported

pytestmark = pytest.mark.engines


def _require(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is part of the engines extra that CI installs")
        pytest.skip(f"{module} not installed (pip install -e '.[engines]')")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A one-core local Spark session without its web UI, in UTC."""
    sql = _require("pyspark.sql")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI"):
            pytest.fail("Spark needs Java (17) in CI")
        pytest.skip("Spark needs Java")
    session = (
        sql.SparkSession.builder.master("local[1]")
        .appName("synarrow-export-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_reads_every_key_exactly(spark: Any, exported: Exported) -> None:
    frame = spark.read.parquet(str(exported.parquet))
    assert frame.schema["key"].dataType.simpleString() == "string"
    assert frame.schema["int_value"].dataType.simpleString() == "bigint"
    assert frame.schema["vector"].dataType.simpleString() == "array<float>"  # as documented
    cols = "key, unix_micros(ts) AS ts, type, value, int_value, text, bytes, vector"
    rows = [r.asDict() for r in frame.selectExpr(*cols.split(", ")).collect()]
    assert rows_by_key(rows) == exported.expected
    for key in ("Zürich", "007", "k\x00a", "NULL", "日本/東京"):  # partition pruning too
        assert frame.filter(frame.key == key).count() == len(exported.expected[key]), key


def test_ray_data_reads_every_key_exactly(exported: Exported) -> None:
    ray = _require("ray")
    ray.init(
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    try:
        dataset = ray.data.read_parquet(str(exported.parquet))
        table = pa.concat_tables([ray.get(ref) for ref in dataset.to_arrow_refs()])
        assert table_rows(table) == exported.expected
        assert table.schema.field("vector").type == pa.list_(pa.float32(), 3)
    finally:
        ray.shutdown()

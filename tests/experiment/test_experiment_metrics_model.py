"""Hypothesis: any sequence of metric logs reads back the same through tensors and SQL.

The model is a plain dict ``(run, metric) -> list of (step, value)`` in logging order.
Flushes (small ``flush_every``), compactions and a reopen are mixed into the sequence, so
histories are read from the log tail, from columnar files and from both.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow

METRICS = ["loss", "acc", "train/loss", "ünï"]

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**53), max_value=2**53),
)
log_op = st.tuples(
    st.just("log"),
    st.integers(0, 2),  # run
    st.sampled_from(METRICS),
    values,
    st.one_of(st.none(), st.integers(-5, 1_000_000)),
)
ops = st.lists(
    st.one_of(log_op, st.just(("compact",)), st.just(("reopen",)), st.just(("flush",))),
    max_size=60,
)


def _same(a: np.ndarray, b: list[float]) -> bool:
    b_arr = np.array(b, dtype=np.float64)
    return a.shape == b_arr.shape and bool(np.array_equal(a, b_arr, equal_nan=True))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=ops, flush_every=st.integers(1, 8))
def test_metric_logs_match_model(ops: list[tuple], flush_every: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="synarrow-exp-hyp-"))
    try:
        _run_ops(root / "exp.db", ops, flush_every)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_ops(path: Path, ops: list[tuple], flush_every: int) -> None:
    exp = synarrow.Experiment("h", path, flush_every=flush_every, flush_interval=3600)
    runs = [exp.start_run(f"r{i}") for i in range(3)]
    model: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for op in ops:
        if op[0] == "log":
            _, ri, metric, value, step = op
            series = model.setdefault((runs[ri].id, metric), [])
            if step is None:
                step = series[-1][0] + 1 if series else 0
            runs[ri].log_metric(metric, value, step=op[4])
            series.append((step, float(value)))
        elif op[0] == "compact":
            exp.compact()
        elif op[0] == "flush":
            exp.flush()
        else:  # reopen (the open runs end as killed) and go on logging to three new runs
            exp.close()
            exp = synarrow.Experiment("h", path, flush_every=flush_every, flush_interval=3600)
            _check(exp, model)
            runs = [exp.start_run(f"r{i}") for i in range(3)]
    _check(exp, model)  # read while the runs are live: buffered values are flushed first
    for r in runs:
        r.end()
    _check(exp, model)
    exp.close()


def _check(
    exp: synarrow.Experiment,
    model: dict[tuple[str, str], list[tuple[int, float]]],
) -> None:
    for (rid, metric), series in model.items():
        assert _same(exp.get_metric_tensor(rid, metric), [v for _, v in series])
        np.testing.assert_array_equal(
            exp.get_metric_steps(rid, metric), np.array([s for s, _ in series], np.int64)
        )
    got = exp.sql(
        "SELECT run_id, metric, count(*) AS n, count(step) AS with_step, "
        "sum(step) AS step_sum, list(value ORDER BY ts) AS vals, "
        "max(value) FILTER (WHERE NOT isnan(value)) AS finite_max "
        "FROM metrics GROUP BY run_id, metric"
    ).to_pylist()
    assert len(got) == len(model)
    by_key = {(r["run_id"], r["metric"]): r for r in got}
    for key, series in model.items():
        row = by_key[key]
        assert row["n"] == row["with_step"] == len(series)
        assert row["step_sum"] == sum(s for s, _ in series)
        assert _same(np.array(row["vals"], dtype=np.float64), [v for _, v in series])
        finite = [v for _, v in series if not math.isnan(v)]
        assert row["finite_max"] == (max(finite) if finite else None)

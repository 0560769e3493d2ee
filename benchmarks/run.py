"""One-command benchmark runner: synarrow vs synadb 1.4.0 vs sqlite3 (and DuckDB /
pandas for the SQL figure), in one run on the same data.

    python -m benchmarks.run [--quick] [--only NAME ...] [--out benchmarks/results.md]

Each benchmark runs in its own worker process (``--worker``) with a time limit,
so a crash, hang or missing synarrow feature costs only that benchmark's
missing rows; rows are streamed to a JSON-lines file and kept even when the
worker is killed.  ``--inline`` runs everything in this process instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import (
    bench_columnar,
    bench_core,
    bench_delta,
    bench_experiment,
    bench_flightsql,
    bench_follow,
    bench_frames,
    bench_scale,
    bench_scaleout,
    bench_snapshots,
    bench_tensor,
    bench_time,
    bench_timeseries,
    bench_vector,
    bench_vector16,
    bench_writers,
)
from .common import Ctx, Row, fmt_value, log, machine_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

ISSUES = {
    2: ("Issue 2: storage engine (log, index, durability, recovery)", bench_core.BENCHMARKS),
    3: ("Issue 3: columnar layer (compaction, zero-copy history, SQL)", bench_columnar.BENCHMARKS),
    4: ("Issue 4: vector store (usearch)", bench_vector.BENCHMARKS),
    5: ("Issue 5: tensors, PyTorch loading, GPU", bench_tensor.BENCHMARKS),
    6: ("Issue 6: experiment tracking and model registry", bench_experiment.BENCHMARKS),
    7: ("Issue 7: scale-out (Arrow Flight, dataset export)", bench_scaleout.BENCHMARKS),
    11: ("Issue 11: on-disk trust (columnar checksums, check)", bench_columnar.TRUST_BENCHMARKS),
    12: ("Issue 12: serving over Arrow Flight SQL (ADBC)", bench_flightsql.BENCHMARKS),
    14: (
        "Issue 14: time-native histories",
        {**bench_time.BENCHMARKS, **bench_timeseries.BENCHMARKS, **bench_frames.BENCHMARKS},
    ),
    15: (
        "Issue 15: snapshots, lineage, Delta export",
        {**bench_snapshots.BENCHMARKS, **bench_delta.BENCHMARKS},
    ),
    16: (
        "Issue 16: vector store metadata, filters, hybrid search, bounded disk",
        bench_vector16.BENCHMARKS,
    ),
    17: (
        "Issue 17: many writers (several writer processes, readers following them)",
        {**bench_follow.BENCHMARKS, **bench_writers.BENCHMARKS},
    ),
    20: ("Issue 20: cost that follows the work (reopen, compaction)", bench_scale.BENCHMARKS),
}
GROUPS = {
    "core": list(bench_core.BENCHMARKS),
    "columnar": list(bench_columnar.BENCHMARKS) + list(bench_columnar.TRUST_BENCHMARKS),
    "vector": list(bench_vector.BENCHMARKS),
    "tensor": list(bench_tensor.BENCHMARKS),
    "experiment": list(bench_experiment.BENCHMARKS),
    "follow": list(bench_follow.BENCHMARKS),
    "writers": list(bench_writers.BENCHMARKS),
    "scaleout": list(bench_scaleout.BENCHMARKS),
    "flightsql": list(bench_flightsql.BENCHMARKS),
    "time": list(bench_time.BENCHMARKS),
    "timeseries": list(bench_timeseries.BENCHMARKS),
    "frames": list(bench_frames.BENCHMARKS),
    "delta": list(bench_delta.BENCHMARKS),
    "snapshots": list(bench_snapshots.BENCHMARKS) + list(bench_delta.BENCHMARKS),
    "vector16": list(bench_vector16.BENCHMARKS),
    "scale": list(bench_scale.BENCHMARKS),
}
ALL: dict[str, tuple[int, object]] = {}
for _issue, (_title, _b) in ISSUES.items():
    for _name, _fn in _b.items():
        ALL[_name] = (_issue, _fn)

SYSTEM_RANK = {
    "synarrow": 0,
    "synadb": 1,
    "sqlite": 2,
    "duckdb table": 3,
    "duckdb table, naive ts": 4,
    "pandas": 5,
    "arrow ipc file": 6,
    "raw write+fsync": 7,
    "usearch": 8,
    "lancedb exact": 9,
    "lancedb index": 10,
}


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------


def _ratio(row: Row, rows: list[Row]) -> float | None:
    if row.value is None or not row.ref or row.system == row.ref:
        return None
    for r in rows:
        if (
            r.bench == row.bench
            and r.figure == row.figure
            and r.system == row.ref
            and r.unit == row.unit
            and r.value
        ):
            if not row.value:
                return None
            return row.value / r.value if row.higher_better else r.value / row.value
    return None


def _verdict(row: Row, rows: list[Row]) -> bool | None:
    if not row.target or row.value is None:
        return None
    if row.wrong():
        return False  # a fast wrong answer meets nothing
    kind, x = row.target[0], float(row.target[1])
    if kind == "min":
        return row.value >= x
    if kind == "max":
        return row.value <= x
    if kind == "ratio":
        r = _ratio(row, rows)
        return None if r is None else r >= x
    return None


def _met_text(row: Row, verdict: bool | None, yes: str, no: str) -> str:
    if row.wrong():
        return f"{no} (wrong values)"
    if verdict is None:
        return "not measured" if yes == "yes" else "?"
    return yes if verdict else no


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], info: dict[str, str], quick: bool, argv: list[str], wall: float) -> str:
    out: list[str] = []
    out.append("# synarrow benchmark results\n")
    out.append(f"Command: `python -m benchmarks.run {' '.join(argv)}`".rstrip() + "  ")
    out.append(
        f"Mode: {'quick (smaller sizes)' if quick else 'default'}; total wall time {wall:.0f} s\n"
    )
    out.append("## Machine\n")
    out.append("| | |\n|---|---|")
    for k, v in info.items():
        out.append(f"| {k} | {_md_cell(v)} |")
    out.append("")

    targets = [r for r in rows if r.target]
    if targets:
        met = sum(1 for r in targets if _verdict(r, rows) is True)
        unk = sum(1 for r in targets if _verdict(r, rows) is None)
        out.append("## Targets from the issues\n")
        out.append(
            f"{met} of {len(targets)} met" + (f" ({unk} not measured)" if unk else "") + ".\n"
        )
        out.append(
            "| issue | figure | synarrow | target | vs ref | met |\n|---|---|---|---|---|---|"
        )
        for r in targets:
            v = _verdict(r, rows)
            ratio = _ratio(r, rows)
            out.append(
                f"| {r.issue} | {_md_cell(r.figure)} | {fmt_value(r.value, r.unit)} | "
                f"{_md_cell(r.target_text)} | "
                f"{f'{ratio:.3g}x {r.ref}' if ratio is not None else ''} | "
                f"{_met_text(r, v, 'yes', 'no')} |"
            )
        out.append("")

    for issue, (title, benches) in ISSUES.items():
        irows = [r for r in rows if r.issue == issue]
        if not irows:
            continue
        out.append(f"## {title}\n")
        out.append(
            "`vs ref`: this figure relative to the reference system named, "
            "> 1 means better (faster, or fewer bytes).\n"
        )
        out.append(
            "| figure | system | result | vs ref | target | notes |\n|---|---|---|---|---|---|"
        )
        bench_order = {b: i for i, b in enumerate(benches)}
        fig_first: dict[tuple[str, str], int] = {}
        for i, r in enumerate(irows):
            fig_first.setdefault((r.bench, r.figure), i)
        irows = sorted(
            irows,
            key=lambda r: (
                bench_order.get(r.bench, 99),
                fig_first[(r.bench, r.figure)],
                SYSTEM_RANK.get(r.system, 9),
            ),
        )
        for r in irows:
            ratio = _ratio(r, rows)
            v = _verdict(r, rows)
            tgt = r.target_text
            if tgt:
                tgt += " — " + _met_text(r, v, "met", "NOT met")
            out.append(
                f"| {_md_cell(r.figure)} | {r.system} | {fmt_value(r.value, r.unit)} | "
                f"{f'{ratio:.3g}x {r.ref}' if ratio is not None else ''} | {_md_cell(tgt)} | "
                f"{_md_cell(r.note)} |"
            )
        out.append("")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


def _run_worker(name: str, quick: bool, timeout: float, tmp_root: str) -> list[Row]:
    issue = ALL[name][0]
    fd, rows_file = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ, BENCH_TMPDIR=tmp_root)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", name, "--rows-file", rows_file]
    if quick:
        cmd.append("--quick")
    extra: list[Row] = []
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
        if rc != 0:
            extra.append(
                Row(
                    issue,
                    name,
                    f"({name} worker)",
                    "runner",
                    None,
                    "",
                    note=f"ERROR worker exited with code {rc}",
                    ref=None,
                )
            )
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        extra.append(
            Row(
                issue,
                name,
                f"({name} worker)",
                "runner",
                None,
                "",
                note=f"ERROR time limit of {timeout:.0f} s reached; rows above "
                f"were measured before it",
                ref=None,
            )
        )
        log(f"!! {name}: killed after {timeout:.0f} s")
    rows = []
    with open(rows_file) as f:
        for line in f:
            if line.strip():
                rows.append(Row.from_json(line))
    os.unlink(rows_file)
    return rows + extra


def _select(only: list[str] | None) -> list[str]:
    if not only:
        return list(ALL)
    names: list[str] = []
    for o in only:
        for part in o.split(","):
            part = part.strip()
            if not part:
                continue
            if part in GROUPS:
                names += GROUPS[part]
            elif part in ALL:
                names.append(part)
            else:
                raise SystemExit(
                    f"unknown benchmark {part!r}; choose from "
                    f"{', '.join(ALL)} or groups {', '.join(GROUPS)}"
                )
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes (~2 min)")
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help=f"benchmarks to run: {', '.join(ALL)}; or groups core, columnar",
    )
    ap.add_argument(
        "--out",
        default=str(HERE / "results.md"),
        help="markdown results file (default: benchmarks/results.md)",
    )
    ap.add_argument("--json", default=None, help="also write all rows as JSON lines here")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="per-benchmark time limit in s (default 300, quick 120)",
    )
    ap.add_argument(
        "--inline", action="store_true", help="run in this process (no isolation, no time limit)"
    )
    ap.add_argument("--list", action="store_true", help="list benchmarks and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rows-file", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.list:
        for name, (issue, fn) in ALL.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            print(f"{name:<16} issue {issue}  {doc[0] if doc else ''}")
        return 0

    if a.worker:  # child process: run one benchmark, stream rows
        ctx = Ctx(quick=a.quick, rows_file=a.rows_file)
        ALL[a.worker][1](ctx)
        return 0

    names = _select(a.only)
    timeout = a.timeout or (120.0 if a.quick else 300.0)
    tmp_root = tempfile.mkdtemp(
        prefix="synarrow-bench-run-", dir=os.environ.get("BENCH_TMPDIR", "/tmp")
    )
    info = machine_info(os.path.dirname(tmp_root))
    rows: list[Row] = []
    t_start = time.perf_counter()
    try:
        for name in names:
            log(f"== {name} (issue {ALL[name][0]}){' [quick]' if a.quick else ''}")
            t0 = time.perf_counter()
            if a.inline:
                ctx = Ctx(quick=a.quick, tmp_root=tmp_root)
                try:
                    ALL[name][1](ctx)
                except Exception as e:
                    ctx.rows.append(
                        Row(
                            ALL[name][0],
                            name,
                            f"({name})",
                            "runner",
                            None,
                            "",
                            note=f"ERROR {type(e).__name__}: {e}",
                            ref=None,
                        )
                    )
                rows += ctx.rows
            else:
                rows += _run_worker(name, a.quick, timeout, tmp_root)
            log(f"   {name} took {time.perf_counter() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    wall = time.perf_counter() - t_start

    md = render(rows, info, a.quick, argv, wall)
    print(md)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(md)
        log(f"results written to {a.out}")
    if a.json:
        with open(a.json, "w") as f:
            for r in rows:
                f.write(r.to_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

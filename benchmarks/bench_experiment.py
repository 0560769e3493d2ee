"""Issue 6 benchmarks: experiment tracking (log_metric calls/s) and the model registry
(save and load of a 1 GB model, MB/s including the SHA-256 checksum).

Systems: synarrow ``Experiment`` / ``ModelRegistry``; the reference ``synadb`` 1.4.0
``Experiment`` / ``ModelRegistry``; a local MLflow file store (``MlflowClient`` with a
``file://`` tracking URI) when ``mlflow`` is importable. Reference systems run first.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from .common import Ctx, Row, log, no_gc

ISSUE = 6
perf = time.perf_counter
MB = 1_000_000
MLFLOW = "mlflow file store"


# --------------------------------------------------------------------------
# log_metric
# --------------------------------------------------------------------------


def _synadb_experiment(path: str, sync_on_write: bool):
    """The reference ``Experiment``; with ``sync_on_write=False`` its database is swapped for
    a no-sync one (its constructor always opens ``SynaDB(path)``, which syncs every write)."""
    from synadb import Experiment
    from synadb.experiment import ExperimentTracker
    from synadb.wrapper import SynaDB

    if sync_on_write:
        return Experiment("bench", path)
    exp = Experiment.__new__(Experiment)
    exp.name, exp._path = "bench", path
    exp._db = SynaDB(path, sync_on_write=False)
    exp._tracker = ExperimentTracker(exp._db, "bench")
    return exp


def bench_log_metric(ctx: Ctx) -> list[Row]:
    """``run.log_metric("loss", v, step=i)`` in a loop, one run, one metric."""
    start = len(ctx.rows)
    b = "log_metric"
    # Like for like: synadb fsyncs every call by default, synarrow buffers. So two figures:
    # durable per call (synadb default vs synarrow log_metric + Experiment.flush(), which
    # fsyncs) and not synced per call (synadb sync_on_write=False vs synarrow's buffer).
    fig = "log_metric calls/s, durable per call"
    fig_ns = "log_metric calls/s, no fsync per call"
    ref_ns = "synadb (no sync)"
    fig_ml = "log_metric calls/s (vs MLflow)"
    n_ref = ctx.n(4_000, 1_500)
    n_ref_nosync = ctx.n(100_000, 20_000)
    n_ml = ctx.n(3_000, 1_000)
    n = ctx.n(1_000_000, 200_000)
    vals = np.random.default_rng(6).random(max(n, n_ref_nosync)).tolist()

    # synadb -------------------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig, "synadb", "calls/s"):
        with ctx.tmpdir("synadb") as d:
            exp = _synadb_experiment(os.path.join(d, "e.db"), True)
            run = exp.start_run()
            lm = run.log_metric
            with no_gc():
                t0 = perf()
                for i in range(n_ref):
                    lm("loss", vals[i], step=i)
                dt = perf() - t0
            run.end()
            exp._db.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synadb",
                n_ref / dt,
                "calls/s",
                note=f"Experiment(name, path) as shipped: each call 2 put_float, each fsynced; "
                f"{n_ref:,} calls",
            )
        )
    with ctx.guard(ISSUE, b, fig_ns, ref_ns, "calls/s", ref=None):
        with ctx.tmpdir("synadb") as d:
            exp = _synadb_experiment(os.path.join(d, "e.db"), False)
            run = exp.start_run()
            lm = run.log_metric
            with no_gc():
                t0 = perf()
                for i in range(n_ref_nosync):
                    lm("loss", vals[i], step=i)
                dt = perf() - t0
            exp._db.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_ns,
                ref_ns,
                n_ref_nosync / dt,
                "calls/s",
                ref=None,
                note=f"the same Experiment on SynaDB(path, sync_on_write=False); "
                f"{n_ref_nosync:,} calls",
            )
        )

    # MLflow -------------------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig_ml, MLFLOW, "calls/s", ref=None):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 deprecates it
        import mlflow
        from mlflow.tracking import MlflowClient

        with ctx.tmpdir("mlflow") as d:
            client = MlflowClient(tracking_uri="file://" + os.path.join(d, "mlruns"))
            run_id = client.create_run(client.create_experiment("bench")).info.run_id
            lm = client.log_metric
            with no_gc():
                t0 = perf()
                for i in range(n_ml):
                    lm(run_id, "loss", vals[i], step=i)
                dt = perf() - t0
            client.set_terminated(run_id)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_ml,
                MLFLOW,
                n_ml / dt,
                "calls/s",
                ref=None,
                note=f"mlflow {mlflow.__version__}, MlflowClient(file://...).log_metric(run, "
                f"key, value, step); {n_ml:,} calls",
            )
        )

    # synarrow -----------------------------------------------------------------------------
    tgt = dict(target=("ratio", 10.0), target_text="≥ 10x synadb, both not synced per call")
    with ctx.guard(ISSUE, b, fig_ns, "synarrow", "calls/s", ref=ref_ns, **tgt):
        import synarrow

        calls, totals = [], []
        for _ in range(2):
            with ctx.tmpdir("synarrow") as d:
                exp = synarrow.Experiment("bench", os.path.join(d, "e.db"))
                run = exp.start_run()
                lm = run.log_metric
                with no_gc():
                    t0 = perf()
                    for i in range(n):
                        lm("loss", vals[i], step=i)
                    t1 = perf()
                    run.end()
                    t2 = perf()
                got = exp.get_metric_tensor(run.id, "loss")
                ok = len(got) == n and got[-1] == vals[n - 1]
                exp.close()
            calls.append(t1 - t0)
            totals.append(t2 - t0)
        note = (
            f"{n:,} calls, best of 2; incl. run end (flush + fsync): "
            f"{n / min(totals) / 1e6:.3g}M/s; values read back: {ok}. Buffered: written every "
            "10k values or 1 s, durable at run end"
        )
        best = n / min(calls)
        ctx.add(Row(ISSUE, b, fig_ns, "synarrow", best, "calls/s", ref=ref_ns, note=note, **tgt))
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_ml,
                "synarrow",
                best,
                "calls/s",
                ref=MLFLOW,
                note="same measurement as above",
                target=("ratio", 10.0),
                target_text="≥ 10x MLflow file store",
            )
        )
    with ctx.guard(ISSUE, b, fig_ns, "synarrow (flush_every=1)", "calls/s", ref=ref_ns):
        import synarrow

        m = ctx.n(100_000, 20_000)
        with ctx.tmpdir("synarrow") as d:
            exp = synarrow.Experiment("bench", os.path.join(d, "e.db"), flush_every=1)
            run = exp.start_run()
            lm = run.log_metric
            with no_gc():
                t0 = perf()
                for i in range(m):
                    lm("loss", vals[i], step=i)
                dt = perf() - t0
            run.end()
            exp.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_ns,
                "synarrow (flush_every=1)",
                m / dt,
                "calls/s",
                ref=ref_ns,
                note=f"every value handed to the OS at once (no buffering, no fsync); {m:,} calls",
            )
        )
    with ctx.guard(ISSUE, b, fig, "synarrow", "calls/s"):
        import synarrow

        with ctx.tmpdir("synarrow") as d:
            exp = synarrow.Experiment("bench", os.path.join(d, "e.db"))
            run = exp.start_run()
            lm, flush = run.log_metric, exp.flush
            with no_gc():
                t0 = perf()
                for i in range(n_ref):
                    lm("loss", vals[i], step=i)
                    flush()  # writes the value and fsyncs: durable on return, as synadb's
                dt = perf() - t0
            run.end()
            got = exp.get_metric_tensor(run.id, "loss")
            ok = len(got) == n_ref and got[-1] == vals[n_ref - 1]
            exp.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                n_ref / dt,
                "calls/s",
                note=f"log_metric + Experiment.flush() (write + fsync) per call; {n_ref:,} "
                f"calls; values read back: {ok}",
            )
        )
    return ctx.rows[start:]


# --------------------------------------------------------------------------
# model save / load
# --------------------------------------------------------------------------


def bench_model_io(ctx: Ctx) -> list[Row]:
    """Save and load of one model of 1 GB (256 MB with --quick), checksum included."""
    start = len(ctx.rows)
    b = "model_io"
    size = ctx.n(1 << 30, 256 << 20)
    label = f"{size / (1 << 30):.3g} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    data = np.random.default_rng(6).bytes(size)
    repeats = ctx.n(3, 2)
    f_save, f_load = f"save_model {label}, bytes", f"load_model {label} -> bytes"
    f_save_p, f_load_p = f"save_model {label}, from file", f"load_model {label} -> file"

    # machine limits, for context -----------------------------------------------------------
    with ctx.guard(ISSUE, b, f_save, "raw write+fsync", "MB/s", ref=None):
        with ctx.tmpdir("raw") as d:
            best = float("inf")
            for i in range(repeats):
                p = os.path.join(d, f"raw{i}")
                mv = memoryview(data)
                with no_gc():
                    t0 = perf()
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    for lo in range(0, size, 8 << 20):
                        os.write(fd, mv[lo : lo + (8 << 20)])
                    os.fsync(fd)
                    os.close(fd)
                    best = min(best, perf() - t0)
                os.unlink(p)
        ctx.add(
            Row(
                ISSUE,
                b,
                f_save,
                "raw write+fsync",
                size / best / MB,
                "MB/s",
                ref=None,
                note="context: os.write of 8 MiB pieces + fsync, no checksum",
            )
        )
    with ctx.guard(ISSUE, b, f_load, "hashlib.sha256", "MB/s", ref=None):
        with no_gc():
            t0 = perf()
            hashlib.sha256(data).hexdigest()
            dt = perf() - t0
        ctx.add(
            Row(
                ISSUE,
                b,
                f_load,
                "hashlib.sha256",
                size / dt / MB,
                "MB/s",
                ref=None,
                note="context: the checksum alone, data in memory",
            )
        )

    # synadb -------------------------------------------------------------------------------
    # Compared at one size for both (synadb keeps models in its log: 256 MiB at most here),
    # both durable on return (synadb's SynaDB syncs by default; save_model fsyncs), loads
    # right after the save (page cache warm).
    ref_size = min(size, 256 << 20)
    ref_label = f"{ref_size >> 20} MiB"
    f_save_cmp = f"save_model {ref_label}, bytes, vs synadb"
    f_load_cmp = f"load_model {ref_label} -> bytes, vs synadb"
    with ctx.guard(ISSUE, b, f_save_cmp, "synadb", "MB/s"):
        from synadb.models import ModelRegistry as RefRegistry

        ref_data = data[:ref_size]
        with ctx.tmpdir("synadb") as d:
            reg = RefRegistry(os.path.join(d, "m.db"))
            with no_gc():
                t0 = perf()
                reg.save("m", ref_data, {"a": "1"})
                t_save = perf() - t0
                t0 = perf()
                back = reg.load("m")
                t_load = perf() - t0
            ok = back == ref_data
            del back
            reg.close()
        note = (
            f"synadb ModelRegistry.save/load of {ref_size >> 20} MiB raw bytes, "
            "sync_on_write=True (its default); load with the page cache warm"
        )
        ctx.add(Row(ISSUE, b, f_save_cmp, "synadb", ref_size / t_save / MB, "MB/s", note=note))
        ctx.add(
            Row(
                ISSUE,
                b,
                f_load_cmp,
                "synadb",
                ref_size / t_load / MB,
                "MB/s",
                note=note + f"; equal: {ok}",
            )
        )

    # synarrow -----------------------------------------------------------------------------
    import synarrow

    tgt = dict(target=("min", 500.0), target_text="≥ 500 MB/s")
    times: dict[str, list[float]] = {"save": [], "save_p": [], "load": [], "load_p": []}
    checks: list[bool] = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    common = f"best of {repeats}, each in a new registry, load avg {load:.1f}; first: "
    with ctx.guard(ISSUE, b, f_save, "synarrow", "MB/s", **tgt):
        with ctx.tmpdir("synarrow") as d:
            src = os.path.join(d, "model.bin")
            with open(src, "wb") as f:
                f.write(data)
            for i in range(repeats):
                root = os.path.join(d, f"r{i}")
                os.mkdir(root)
                with synarrow.ModelRegistry(os.path.join(root, "models.db")) as reg:
                    with no_gc():
                        t0 = perf()
                        v = reg.save_model("m", data, {"i": i})
                        times["save"].append(perf() - t0)
                    with no_gc():
                        t0 = perf()
                        back, info = reg.load_model("m")
                        times["load"].append(perf() - t0)
                    checks.append(back == data and info.checksum == v.checksum)
                    del back
                    out = os.path.join(root, "out.bin")
                    with no_gc():
                        t0 = perf()
                        reg.load_model("m", path=out)
                        times["load_p"].append(perf() - t0)
                    os.unlink(out)
                    reg.delete_version("m", 1)  # frees the blob: the next save is a new file
                    with no_gc():
                        t0 = perf()
                        reg.save_model("p", src)
                        times["save_p"].append(perf() - t0)
                log(f"    synarrow model_io repeat {i}: { ({k: v[-1] for k, v in times.items()}) }")
        ctx.add(
            Row(
                ISSUE,
                b,
                f_save,
                "synarrow",
                size / min(times["save"]) / MB,
                "MB/s",
                note=common
                + f"{size / times['save'][0] / MB:.0f} MB/s. Streamed to blobs/, SHA-256 in a "
                "second thread, fsync + rename + dir fsync, metadata fsynced",
                **tgt,
            )
        )
    if times["load"]:
        ctx.add(
            Row(
                ISSUE,
                b,
                f_load,
                "synarrow",
                size / min(times["load"]) / MB,
                "MB/s",
                note=common
                + f"{size / times['load'][0] / MB:.0f} MB/s. read() then SHA-256 of the "
                f"returned bytes; equal and checksum ok: {all(checks)}",
                **tgt,
            )
        )
    if times["save_p"]:
        ctx.add(
            Row(
                ISSUE,
                b,
                f_save_p,
                "synarrow",
                size / min(times["save_p"]) / MB,
                "MB/s",
                note=common
                + f"{size / times['save_p'][0] / MB:.0f} MB/s. Two 8 MiB buffers (bounded "
                "memory), fsynced",
            )
        )
    if times["load_p"]:
        ctx.add(
            Row(
                ISSUE,
                b,
                f_load_p,
                "synarrow",
                size / min(times["load_p"]) / MB,
                "MB/s",
                note=common
                + f"{size / times['load_p'][0] / MB:.0f} MB/s. Two 8 MiB buffers, verified "
                "before the rename into place (not fsynced)",
            )
        )
    with ctx.guard(ISSUE, b, f_save_cmp, "synarrow", "MB/s"):
        with ctx.tmpdir("synarrow-cmp") as d:
            cmp_data = data[:ref_size]
            with synarrow.ModelRegistry(os.path.join(d, "models.db")) as reg:
                with no_gc():
                    t0 = perf()
                    reg.save_model("m", cmp_data, {"a": "1"})
                    t_save = perf() - t0
                    t0 = perf()
                    back, _ = reg.load_model("m")
                    t_load = perf() - t0
                ok = back == cmp_data
                del back
        note = (
            f"the same {ref_size >> 20} MiB, save_model (fsynced) then load_model "
            "(SHA-256 verified) with the page cache warm; 1 run"
        )
        ctx.add(Row(ISSUE, b, f_save_cmp, "synarrow", ref_size / t_save / MB, "MB/s", note=note))
        ctx.add(
            Row(
                ISSUE,
                b,
                f_load_cmp,
                "synarrow",
                ref_size / t_load / MB,
                "MB/s",
                note=note + f"; equal: {ok}",
            )
        )
    return ctx.rows[start:]


BENCHMARKS = {"log_metric": bench_log_metric, "model_io": bench_model_io}

"""Issue 5 benchmarks: TensorEngine put/get, DataLoader epochs over windows, host-to-device.

Same conventions as bench_core: ``fn(ctx) -> list[Row]``, one guard per side, reference
systems first. Run on its own with ``python -m benchmarks.bench_tensor [--quick]``.

* ``tensor_put_get``: put 60,000 x 784 float32 (MNIST-sized) and get it back; synadb's
  ``TensorEngine`` on the same data (its chunked-bytes path; its per-element ``put_tensor``
  is timed on a few rows only, since it writes one durable entry per element);
* ``tensor_loader``: one ``DataLoader`` epoch over 1M sliding windows of a compacted series,
  against the same windows served by a ``Dataset`` over an in-memory numpy array that, like
  ``WindowDataset``, gathers a batch per call (the one-sample-per-call Dataset as context);
* ``tensor_gpu``: host-to-device GB/s of a 1 GiB history against a pinned-memory torch copy
  of the same bytes (skipped without CUDA).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .common import Ctx, Row, best_time, log, no_gc

ISSUE = 5
perf = time.perf_counter
GB = 1e9


def _sa_db(path: str) -> Any:
    import synarrow

    return synarrow.SynaDB(path, config=synarrow.DbConfig(sync_on_write=False, auto_compact=False))


# --------------------------------------------------------------------------
# put / get of an MNIST-sized tensor
# --------------------------------------------------------------------------


def bench_put_get(ctx: Ctx) -> list[Row]:
    """put 60,000 x 784 float32, then get it back (after compaction: zero-copy)."""
    start = len(ctx.rows)
    b = "tensor_put_get"
    rows = ctx.n(60_000, 20_000)
    x = np.random.default_rng(5).random((rows, 784), dtype=np.float32)
    nbytes = x.nbytes
    fig_put = f"put_tensor {rows:,} x 784 float32"
    fig_get = f"get_tensor {rows:,} x 784 float32, after compaction"
    fig_tail = f"get_tensor {rows:,} x 784 float32, from the log tail"
    fig_elem = "put_tensor, one key per element (reference semantics)"

    # synadb ---------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig_put, "synadb", "GB/s"):
        import synadb

        with ctx.tmpdir("synadb-tensor") as d:
            eng = synadb.TensorEngine(os.path.join(d, "t.db"))
            try:
                chunk = 784 * 1000
                t0 = perf()
                eng.put_tensor_chunked("train/", x, chunk_size=chunk)
                dt_put = perf() - t0
                out: list[np.ndarray] = []
                dt_get = best_time(
                    lambda: out.append(
                        eng.get_tensor_chunked("train/*", dtype=np.float32, shape=x.shape)
                    ),
                    2,
                    budget_s=5,
                )
                eq = np.array_equal(out[-1], x)
            finally:
                eng.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_put,
                "synadb",
                nbytes / dt_put / GB,
                "GB/s",
                note=f"put_tensor_chunked, {chunk:,} elements per chunk (its default "
                "SynaDB: sync_on_write=True); per-element put_tensor: see below",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_get,
                "synadb",
                dt_get * 1e3,
                "ms",
                False,
                note=f"get_tensor_chunked (a copy); page cache warm; equal: {eq}",
            )
        )

    with ctx.guard(ISSUE, b, fig_elem, "synadb", "elements/s"):
        import synadb

        with ctx.tmpdir("synadb-elem") as d:
            eng = synadb.TensorEngine(os.path.join(d, "t.db"))
            try:
                few = x[: ctx.n(4, 1)]
                t0 = perf()
                eng.put_tensor("e/", few)
                dt = perf() - t0
            finally:
                eng.close()
        rate = few.size / dt
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_elem,
                "synadb",
                rate,
                "elements/s",
                note=f"{len(few)} rows ({few.size:,} durable puts) timed; the full "
                f"tensor would take ~{x.size / rate / 3600:.1f} h",
            )
        )

    # synarrow -------------------------------------------------------------------
    # synadb's TensorEngine always syncs, so the row compared with it is put + sync()
    # (durable on return, like synadb's); the buffered put carries the issue's target.
    fig_buf = f"put_tensor {rows:,} x 784 float32, buffered (no sync)"
    with ctx.guard(ISSUE, b, fig_put, "synarrow", "GB/s"):
        import synarrow

        with ctx.tmpdir("sa-tensor") as d:
            times, synced = [], []
            for i in range(3):
                p = os.path.join(d, f"t{i}.db")
                db = _sa_db(p)
                eng = synarrow.TensorEngine(db)
                with no_gc():
                    t0 = perf()
                    eng.put_tensor("train/", x)
                    t1 = perf()
                    db.sync()
                    t2 = perf()
                times.append(t1 - t0)
                synced.append(t2 - t0)
                db.close()
                if sum(synced) > 8:
                    break
            dt = min(times)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_put,
                "synarrow",
                nbytes / min(synced) / GB,
                "GB/s",
                note=f"put_tensor + db.sync(): durable on return, as synadb's (equal "
                f"durability, same {nbytes / 1e6:.0f} MB tensor); best of {len(synced)}",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_buf,
                "synarrow",
                nbytes / dt / GB,
                "GB/s",
                ref=None,
                note=f"one record; DbConfig(sync_on_write=False), in the page cache, not "
                f"durable; best of {len(times)}",
                target=("min", 1.0),
                target_text="≥ 1 GB/s",
            )
        )

    with ctx.guard(
        ISSUE,
        b,
        fig_get,
        "synarrow",
        "ms",
        higher_better=False,
        target=("max", 1.0),
        target_text="< 1 ms, zero-copy",
    ):
        import synarrow

        with ctx.tmpdir("sa-get") as d:
            p = os.path.join(d, "t.db")
            db = _sa_db(p)
            eng = synarrow.TensorEngine(db)
            eng.put_tensor("train/", x)
            out = []

            def read_tail() -> None:
                out.append(eng.get_tensor("train/*"))
                del out[1:-1]  # the first and the last read (copies could fill memory)

            dt_tail = best_time(read_tail, 50, budget_s=3)
            tail_eq = np.array_equal(out[-1], x)
            # Two reads that share memory view one stored buffer (a copy per read would not).
            tail_view = np.shares_memory(out[-1], out[0]) and not out[-1].flags.writeable
            out.clear()
            db.compact()
            db.close()
            db = _sa_db(p)
            eng = synarrow.TensorEngine(db)
            t0 = perf()
            first = eng.get_tensor("train/*")
            dt_first = perf() - t0
            dt = best_time(lambda: out.append(eng.get_tensor("train/*")), 200, budget_s=2)
            got = out[-1]
            hist = db.get_history_tensor("train/#tensor")
            zero_copy = (
                np.shares_memory(got, hist)
                and np.shares_memory(got, first)
                and not got.flags.writeable
            )
            eq = np.array_equal(got, x)
            torch_ok = ""
            try:
                t = eng.get_tensor_torch("train/*")
                torch_ok = f"; get_tensor_torch shares memory: {t.data_ptr() == got.ctypes.data}"
            except Exception as e:
                torch_ok = f"; torch: {type(e).__name__}"
            db.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_get,
                "synarrow",
                dt * 1e3,
                "ms",
                False,
                note=f"zero-copy: {'yes' if zero_copy else 'NO'} (np.shares_memory with "
                f"the mapped history, read-only); page cache warm; first call after reopen "
                f"{dt_first * 1e3:.3g} ms; equal: {eq}{torch_ok}",
                target=("max", 1.0),
                target_text="< 1 ms, zero-copy",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_tail,
                "synarrow",
                dt_tail * 1e3,
                "ms",
                False,
                note=f"before compaction: a view of the mapped log segment: "
                f"{'yes' if tail_view else 'NO'}; page cache warm; equal: {tail_eq}",
            )
        )
        ctx.add(
            Row(
                20,
                b,
                f"get_tensor {rows:,} x 784 float32, log tail vs after compaction",
                "synarrow",
                dt_tail / dt,
                "x",
                False,
                note=f"{dt_tail * 1e3:.3g} ms from the log, {dt * 1e3:.3g} ms compacted, same "
                f"run; zero-copy: {'yes' if tail_view else 'NO'} (read-only, two reads share "
                f"memory); equal: {tail_eq}",
                ref=None,
                target=("max", 2.0),
                target_text="within 2x of compacted",
            )
        )
    return ctx.rows[start:]


def bench_history_log(ctx: Ctx) -> list[Row]:
    """get_history_floats of a 1M-float batch still in the log vs after compaction."""
    start = len(ctx.rows)
    b = "history_log"
    n = ctx.n(1_000_000, 200_000)
    fig = f"get_history_floats of a {n / 1e6:g}M-float batch, log vs after compaction"
    with ctx.guard(20, b, fig, "synarrow", "x", higher_better=False, ref=None):
        x = np.random.default_rng(7).standard_normal(n)
        with ctx.tmpdir("sa-history") as d:
            p = os.path.join(d, "h.db")
            db = _sa_db(p)
            db.append_batch("h", x)
            got: list[np.ndarray] = []
            dt_log = best_time(lambda: got.append(db.get_history_floats("h")), 200, budget_s=1)
            log_ok = np.array_equal(got[-1], x)
            log_view = not got[-1].flags.writeable and np.shares_memory(got[-1], got[0])
            got.clear()
            db.compact()
            db.close()
            db = _sa_db(p)
            dt_col = best_time(lambda: got.append(db.get_history_floats("h")), 200, budget_s=1)
            col_ok = np.array_equal(got[-1], x)
            db.close()
        ctx.add(
            Row(
                20,
                b,
                fig,
                "synarrow",
                dt_log / dt_col,
                "x",
                False,
                note=f"{dt_log * 1e3:.3g} ms from the log (zero-copy: {'yes' if log_view else 'NO'}"
                f", read-only, two reads share memory), {dt_col * 1e3:.3g} ms compacted, same run; "
                f"equal: {log_ok and col_ok}",
                ref=None,
                target=("max", 2.0),
                target_text="within 2x of compacted",
            )
        )
    return ctx.rows[start:]


# --------------------------------------------------------------------------
# DataLoader epoch over sliding windows
# --------------------------------------------------------------------------


def _numpy_windows(series: np.ndarray, window: int, horizon: int, *, batched: bool) -> Any:
    """The baseline a user would write: a Dataset over an in-memory numpy array.

    ``batched=True`` gives it what ``WindowDataset`` has, so both do equal work per call:
    ``dataset[list_of_indices]`` and ``__getitems__`` gather a whole batch with one numpy
    fancy index (DataLoader then fetches a batch per call). ``batched=False`` is the plain
    one-sample-per-call Dataset, shown for context.
    """
    import torch
    from torch.utils.data import Dataset

    view = np.lib.stride_tricks.sliding_window_view(series, window + horizon)

    class NumpyWindows(Dataset):
        def __len__(self) -> int:
            return len(series) - window - horizon + 1

        def __getitem__(self, i: Any) -> Any:
            if isinstance(i, (list, np.ndarray)):  # a batch: one gather
                rows = view[np.asarray(i)]
                return (
                    torch.from_numpy(np.ascontiguousarray(rows[:, :window])),
                    torch.from_numpy(np.ascontiguousarray(rows[:, window:])),
                )
            return (
                torch.from_numpy(series[i : i + window]),
                torch.from_numpy(series[i + window : i + window + horizon]),
            )

    class BatchedNumpyWindows(NumpyWindows):
        def __getitems__(self, indices: Any) -> list[Any]:
            x, y = self[list(indices)]
            return list(zip(x.unbind(0), y.unbind(0)))

    return BatchedNumpyWindows() if batched else NumpyWindows()


def _epoch(loader: Any) -> tuple[float, int, float]:
    t0 = perf()
    n = 0
    check = 0.0
    for x, _y in loader:
        n += len(x)
        check += float(x[0, 0])
    return perf() - t0, n, check


def bench_loader(ctx: Ctx) -> list[Row]:
    """One DataLoader epoch over 1M windows (window 32, horizon 1) of a compacted series."""
    start = len(ctx.rows)
    b = "tensor_loader"
    windows = ctx.n(1_000_000, 200_000)
    window, horizon, batch, workers = 32, 1, 256, 2
    n = windows + window + horizon - 1
    series = np.random.default_rng(7).standard_normal(n)
    label = f"{windows / 1e6:g}M" if windows >= 1_000_000 else f"{windows // 1000}k"
    fig = f"DataLoader epoch, {label} windows, {workers} workers"
    fig0 = f"DataLoader epoch, {label} windows, in-process"
    fig_fast = f"batch_loader epoch, {label} windows, {workers} workers"
    setting = f"window {window}, horizon {horizon}, batch {batch}"
    results: dict[str, tuple[float, int, float]] = {}

    with ctx.guard(ISSUE, b, fig, "numpy array", "samples/s", ref=None):
        from torch.utils.data import DataLoader

        from synarrow.torch_data import batch_loader

        ds = _numpy_windows(series.copy(), window, horizon, batched=True)
        dt, got, check = _epoch(DataLoader(ds, batch_size=batch, num_workers=workers))
        results["numpy"] = (dt, got, check)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "numpy array",
                got / dt,
                "samples/s",
                ref=None,
                note=f"Dataset over an in-memory numpy array gathering a batch per call "
                f"(__getitems__, one fancy index), as WindowDataset does; {setting}",
            )
        )
        dt0, got0, _ = _epoch(DataLoader(ds, batch_size=batch, num_workers=0))
        ctx.add(
            Row(
                ISSUE,
                b,
                fig0,
                "numpy array",
                got0 / dt0,
                "samples/s",
                ref=None,
                note="num_workers=0; batch per call",
            )
        )
        dtf, gotf, _ = _epoch(batch_loader(ds, batch, num_workers=workers))
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_fast,
                "numpy array",
                gotf / dtf,
                "samples/s",
                ref=None,
                note="the same batch_loader (one dataset[list] per batch)",
            )
        )
        per_sample = _numpy_windows(series.copy(), window, horizon, batched=False)
        dts, gots, _ = _epoch(DataLoader(per_sample, batch_size=batch, num_workers=workers))
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "numpy array, per sample",
                gots / dts,
                "samples/s",
                ref="numpy array",
                note="context: the plain Dataset fetching one sample per call",
            )
        )

    with ctx.guard(
        ISSUE,
        b,
        fig,
        "synarrow",
        "samples/s",
        ref="numpy array",
        target=("ratio", 1 / 1.5),
        target_text="within 1.5x of numpy",
    ):
        from torch.utils.data import DataLoader

        from synarrow.torch_data import WindowDataset, batch_loader

        with ctx.tmpdir("sa-loader") as d:
            p = os.path.join(d, "s.db")
            db = _sa_db(p)
            db.append_batch("series", series)
            db.compact()
            db.close()
            ds = WindowDataset(p, "series", window=window, horizon=horizon)
            assert len(ds) == windows
            dt, got, check = _epoch(DataLoader(ds, batch_size=batch, num_workers=workers))
            same = "numpy" not in results or abs(check - results["numpy"][2]) < 1e-6
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synarrow",
                    got / dt,
                    "samples/s",
                    ref="numpy array",
                    note=f"WindowDataset over the compacted db (workers reopen it "
                    f"read-only); {setting}; {got:,} samples, same data: {same}",
                    target=("ratio", 1 / 1.5),
                    target_text="within 1.5x of numpy",
                )
            )
            dt0, got0, _ = _epoch(DataLoader(ds, batch_size=batch, num_workers=0))
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig0,
                    "synarrow",
                    got0 / dt0,
                    "samples/s",
                    ref="numpy array",
                    note="num_workers=0",
                )
            )
            dtf, gotf, _ = _epoch(batch_loader(ds, batch, num_workers=workers))
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig_fast,
                    "synarrow",
                    gotf / dtf,
                    "samples/s",
                    ref="numpy array",
                    note="one gather per batch (BatchSampler, batch_size=None)",
                )
            )
    return ctx.rows[start:]


# --------------------------------------------------------------------------
# host to device
# --------------------------------------------------------------------------


def bench_gpu(ctx: Ctx) -> list[Row]:
    """Host-to-device GB/s of a 1 GiB float64 history vs a pinned torch copy."""
    start = len(ctx.rows)
    b = "tensor_gpu"
    nbytes = ctx.n(1 << 30, 256 << 20)
    fig = f"host to device, {nbytes >> 20} MiB history"
    ref = "pinned torch copy"
    from synarrow import gpu

    if not gpu.is_available():
        for system in (ref, "synarrow"):
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    system,
                    None,
                    "GB/s",
                    ref=ref if system != ref else None,
                    note="skipped: no CUDA device on this machine",
                )
            )
        return ctx.rows[start:]

    import torch

    n = nbytes // 8
    with ctx.tmpdir("sa-gpu") as d:
        p = os.path.join(d, "g.db")
        db = _sa_db(p)
        db.append_batch("x", np.random.default_rng(9).standard_normal(n))
        db.compact()
        view = db.get_history_floats("x")
        view.sum()  # warm the page cache
        dev = torch.device("cuda")

        def timed(fn: Any) -> float:
            def run() -> None:
                fn()
                torch.cuda.synchronize()

            return best_time(run, 5, budget_s=10)

        with ctx.guard(ISSUE, b, fig, ref, "GB/s", ref=None):
            dt = timed_pinned(view, dev, timed)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    ref,
                    nbytes / dt / GB,
                    "GB/s",
                    ref=None,
                    note="pinned host tensor .to('cuda'): the bus limit",
                )
            )
        with ctx.guard(ISSUE, b, fig, "naive .to('cuda')", "GB/s", ref=ref):
            import pyarrow as pa

            dt = timed(lambda: torch.from_dlpack(pa.array(view)).to(dev))
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "naive .to('cuda')",
                    nbytes / dt / GB,
                    "GB/s",
                    ref=ref,
                    note="zero-copy mmap view straight to the device (pageable)",
                )
            )
        with ctx.guard(
            ISSUE,
            b,
            fig,
            "synarrow",
            "GB/s",
            ref=ref,
            target=("ratio", 0.8),
            target_text="≥ 0.8x pinned copy",
        ):
            out: list[Any] = []
            dt = timed(lambda: out.append(gpu.history_to_device(db, "x", "cuda")))
            arr = out[-1]
            t = arr.torch()
            idx = np.random.default_rng(1).integers(0, n, 1000)
            ok = np.array_equal(t[torch.from_numpy(idx).to(dev)].cpu().numpy(), view[idx])
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synarrow",
                    nbytes / dt / GB,
                    "GB/s",
                    ref=ref,
                    note=f"gpu.history_to_device, backend {arr.backend}: pinned staging "
                    f"ring 2 x {gpu.STAGING_BYTES >> 20} MiB, 2 streams; "
                    f"sample equal: {ok}",
                    target=("ratio", 0.8),
                    target_text="≥ 0.8x pinned copy",
                )
            )
            out.clear()
        db.close()
    return ctx.rows[start:]


def timed_pinned(view: np.ndarray, dev: Any, timed: Any) -> float:
    """Best time of a copy from a pinned host tensor holding ``view`` (freed afterwards)."""
    import pyarrow as pa
    import torch

    pinned = torch.empty(len(view), dtype=torch.float64, pin_memory=True)
    pinned.copy_(torch.from_dlpack(pa.array(view)))
    return timed(lambda: pinned.to(dev))  # type: ignore[no-any-return]


BENCHMARKS = {
    "tensor_put_get": bench_put_get,
    "tensor_loader": bench_loader,
    "tensor_gpu": bench_gpu,
    "history_log": bench_history_log,
}


def main(argv: list[str] | None = None) -> int:
    """Run these benchmarks in this process and print their rows."""
    import argparse

    from .common import fmt_value

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=list(BENCHMARKS))
    args = ap.parse_args(argv)
    ctx = Ctx(quick=args.quick)
    for name in args.only:
        log(f"== {name}")
        BENCHMARKS[name](ctx)
    print("| figure | system | result | notes |\n|---|---|---|---|")
    for r in ctx.rows:
        print(f"| {r.figure} | {r.system} | {fmt_value(r.value, r.unit)} | {r.note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

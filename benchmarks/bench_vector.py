"""Issue 4 benchmarks: the vector store (recall, search QPS, insert throughput) against raw
usearch on the same index settings and the reference system's ``synadb.VectorStore``.

Data: a mixture of 100 Gaussians (unit variance, centres scaled by 3; fixed seeds), data
and queries drawn from the same mixture; truth by exact numpy cosine brute force; k = 10.
Every benchmark is ``fn(ctx) -> list[Row]``; the reference sides run first. Raw usearch and
synarrow are measured alternately (best of each), so a busy machine hurts both alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .common import Ctx, Row, log, no_gc

ISSUE = 4
K = 10
perf = time.perf_counter
# synarrow VectorStore defaults, given to raw usearch as well.
SETTINGS = {"connectivity": 16, "expansion_add": 128, "expansion_search": 96}
USEARCH = "usearch"
SETTINGS_TEXT = "f32, connectivity 16, expansion_add 128, expansion_search 96, all cores"
INSERT_TARGET = {"target": ("ratio", 0.8), "target_text": "≥ 0.8x raw usearch add"}
SEARCH_TARGET = {"target": ("ratio", 0.8), "target_text": "≥ 0.8x raw usearch search"}
RECALL_TARGET = {"target": ("min", 0.98), "target_text": "≥ 0.98"}


def mixture(n: int, dims: int, seed: int, clusters: int = 100) -> np.ndarray:
    """``n`` points of a fixed Gaussian mixture (centres depend only on dims and clusters)."""
    centres = np.random.default_rng(dims * 7919 + clusters).standard_normal((clusters, dims))
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, dims))
    return (centres[rng.integers(0, clusters, n)] * 3.0 + noise).astype(np.float32)


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row indices of the k nearest rows by cosine, computed with numpy (the truth)."""
    dn = data / np.linalg.norm(data, axis=1, keepdims=True)
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), 256):
        q = queries[lo : lo + 256]
        sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ dn.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[lo : lo + 256] = np.take_along_axis(top, order, axis=1)
    return out


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    """Mean share of the true top-k found."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def keys_for(n: int) -> list[str]:
    return [f"doc/{i:07d}" for i in range(n)]


def found_rows(hits: list[list[Any]]) -> list[list[int]]:
    """Row numbers from search results whose keys came from :func:`keys_for`."""
    return [[int(h.key.rsplit("/", 1)[1]) for h in row] for row in hits]


def raw_index(dims: int) -> Any:
    from usearch.index import Index

    return Index(ndim=dims, metric="cos", dtype="f32", **SETTINGS)


def timed(fn: Callable[[], Any], cpu: list[float] | None = None) -> float:
    """Wall seconds of ``fn()``; its process CPU seconds are appended to ``cpu`` if given."""
    with no_gc():
        c0 = time.process_time()
        t0 = perf()
        fn()
        dt = perf() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return dt


def qps(search: Callable[[np.ndarray], Any], queries: np.ndarray, budget_s: float = 8.0) -> float:
    """Single-query searches per second over ``queries`` (one pass, time-boxed)."""
    done = 0
    with no_gc():
        t0 = perf()
        for q in queries:
            search(q)
            done += 1
            if perf() - t0 > budget_s:
                break
        dt = perf() - t0
    return done / dt


def compare_qps(
    f: Figures,
    figure: str,
    raw_search: Callable[[np.ndarray], Any],
    store_search: Callable[[np.ndarray], Any],
    queries: np.ndarray,
    *,
    reps: int,
    raw_note: str,
    store_note: str,
    target: dict[str, Any],
) -> None:
    """Single-query rates of raw usearch and the store, measured alternately (best of
    ``reps`` each), as two rows of ``figure``."""
    rates: dict[str, list[float]] = {USEARCH: [], "synarrow": []}
    for _ in range(reps):
        rates[USEARCH].append(qps(raw_search, queries))
        rates["synarrow"].append(qps(store_search, queries))
    f.add(figure, USEARCH, max(rates[USEARCH]), "queries/s", note=raw_note)
    f.add(
        figure,
        "synarrow",
        max(rates["synarrow"]),
        "queries/s",
        ref=USEARCH,
        **target,
        note=store_note,
    )


def close_quietly(store: Any) -> None:
    try:
        store.close()
    except Exception:  # benchmark cleanup only: a failed close must not hide the figures
        pass


class Figures:
    """Adds rows of one benchmark: ``fig.add(figure, system, value, unit, **row)``."""

    def __init__(self, ctx: Ctx, bench: str, issue: int = ISSUE) -> None:
        self.ctx = ctx
        self.bench = bench
        self.issue = issue
        self.start = len(ctx.rows)

    def add(self, figure: str, system: str, value: float | None, unit: str, **kw: Any) -> None:
        """Record one row (``ref`` defaults to none)."""
        kw.setdefault("ref", None)
        self.ctx.add(Row(self.issue, self.bench, figure, system, value, unit, **kw))

    def guard(self, figure: str, system: str, unit: str = "", **kw: Any) -> Any:
        """A context that records an error row for this figure instead of raising."""
        kw.setdefault("ref", None)
        return self.ctx.guard(self.issue, self.bench, figure, system, unit, **kw)

    def rows(self) -> list[Row]:
        """The rows this benchmark added."""
        return self.ctx.rows[self.start :]


# --------------------------------------------------------------------------
# 100k x 128: insert, single-query QPS, recall, vs raw usearch
# --------------------------------------------------------------------------


def bench_vector_128(ctx: Ctx) -> list[Row]:
    """insert_batch and single-query search against raw usearch; recall@10 with defaults."""
    from synarrow import VectorStore

    f = Figures(ctx, "vector_128")
    dims = 128
    n = ctx.n(100_000, 10_000)
    nq = ctx.n(1000, 200)
    reps = 3
    data = mixture(n, dims, seed=1)
    queries = mixture(nq, dims, seed=2)
    keys = keys_for(n)
    labels = np.arange(n, dtype=np.uint64)
    t0 = perf()
    truth = exact_top_k(data, queries)
    log(f"  truth by numpy brute force: {perf() - t0:.2f} s")
    size = f"{n // 1000}k x {dims}"
    fig_ins = f"insert_batch {size}"
    fig_q = f"search 1 query, k=10, {size}"

    times: dict[str, list[float]] = {USEARCH: [], "synarrow": []}
    cpu: dict[str, list[float]] = {USEARCH: [], "synarrow": []}
    raw: Any = None
    store: Any = None
    with ctx.tmpdir("vector") as d:
        try:
            for rep in range(reps):  # alternately, so load on the machine hits both alike
                with f.guard(fig_ins, USEARCH, "vectors/s"):
                    raw = raw_index(dims)
                    times[USEARCH].append(timed(lambda r=raw: r.add(labels, data), cpu[USEARCH]))
                with f.guard(fig_ins, "synarrow", "vectors/s", ref=USEARCH, **INSERT_TARGET):
                    if store is not None:
                        close_quietly(store)
                    store = VectorStore(os.path.join(d, f"v{rep}.db"), dims)
                    times["synarrow"].append(
                        timed(lambda s=store: s.insert_batch(keys, data), cpu["synarrow"])
                    )
            if times[USEARCH]:
                f.add(
                    fig_ins,
                    USEARCH,
                    n / min(times[USEARCH]),
                    "vectors/s",
                    note=f"Index.add(labels, matrix); {SETTINGS_TEXT}; best of {reps}",
                )
            if times["synarrow"]:
                f.add(
                    fig_ins,
                    "synarrow",
                    n / min(times["synarrow"]),
                    "vectors/s",
                    ref=USEARCH,
                    **INSERT_TARGET,
                    note="insert_batch(keys, matrix): log (one fsync) + index, "
                    f"default settings; best of {reps}; CPU s (min) synarrow "
                    f"{min(cpu['synarrow']):.2f} vs usearch {min(cpu[USEARCH] or [0]):.2f}",
                )

            with f.guard(fig_q, "synarrow", "queries/s", ref=USEARCH, **SEARCH_TARGET):
                compare_qps(
                    f,
                    fig_q,
                    lambda q: raw.search(q, K),
                    lambda q: store.search(q, K),
                    queries,
                    reps=3,
                    raw_note=f"Index.search(q, 10) per query; {nq} queries; best of 3",
                    store_note=f"store.search(q, k=10) -> [SearchResult]; {nq} queries; best of 3",
                    target=SEARCH_TARGET,
                )

            fig = f"recall@10, defaults, {size}"
            with f.guard(fig, "synarrow", **RECALL_TARGET):
                f.add(
                    fig,
                    USEARCH,
                    recall(raw.search(queries, K).keys.tolist(), truth),
                    "",
                    note="same settings; context",
                )
                f.add(
                    fig,
                    "synarrow",
                    recall(found_rows(store.search_batch(queries, K)), truth),
                    "",
                    **RECALL_TARGET,
                    note=f"VectorStore(path, {dims}) defaults; truth: numpy brute force",
                )

            fig = f"search_batch {nq} queries, k=10, {size}"
            with f.guard(fig, "synarrow", "queries/s", ref=USEARCH):
                t_raw = min(timed(lambda: raw.search(queries, K)) for _ in range(3))
                t_sa = min(timed(lambda: store.search_batch(queries, K)) for _ in range(3))
                f.add(fig, USEARCH, nq / t_raw, "queries/s", note="Index.search(matrix, 10)")
                f.add(
                    fig,
                    "synarrow",
                    nq / t_sa,
                    "queries/s",
                    ref=USEARCH,
                    note="store.search_batch(matrix, k=10)",
                )

            _filters(f, store, queries, data, keys, size)
            _reopen(f, store, data, keys, size)
        finally:
            if store is not None:
                close_quietly(store)
    return f.rows()


def _filters(
    f: Figures, store: Any, queries: np.ndarray, data: np.ndarray, keys: list[str], size: str
) -> None:
    """Context: filtered search speed, and its recall against filtered brute force."""
    n = len(keys)
    nq = min(200, len(queries))
    # keys are doc/0000000 ...: the first tenth of n (a power of 10) shares this prefix
    prefix = "doc/" + "0" * (7 - len(str(n // 10)) + 1)
    cases = (
        ("prefix, 10% of keys", {"prefix": prefix}, lambda i: keys[i].startswith(prefix)),
        (
            "predicate, 1% of keys",
            {"filter": lambda key: key.endswith("00")},
            lambda i: i % 100 == 0,
        ),
    )
    for label, kw, ok in cases:
        fig = f"filtered search, {label}, {size}"
        with f.guard(fig, "synarrow", "queries/s"):
            allowed = np.array([i for i in range(n) if ok(i)])
            truth = allowed[exact_top_k(data[allowed], queries[:nq])]
            hits: list[list[Any]] = []
            dt = timed(
                lambda h=hits, kw=kw: h.extend(store.search(q, K, **kw) for q in queries[:nq])
            )
            f.add(
                fig,
                "synarrow",
                nq / dt,
                "queries/s",
                note=f"{len(allowed):,} keys allowed; recall@10 "
                f"{recall(found_rows(hits), truth):.3f} vs filtered brute force",
            )


def _reopen(f: Figures, store: Any, data: np.ndarray, keys: list[str], size: str) -> None:
    """Context: closing (index save) and reopening a store."""
    from synarrow import VectorStore

    fig = f"reopen saved store, {size}"
    with f.guard(fig, "synarrow", "s", higher_better=False):
        path = store.path
        t_close = timed(store.close)
        holder: list[Any] = []
        t_open = timed(lambda: holder.append(VectorStore(path)))
        again = holder[0]
        ok = again.search(data[0], 1)[0].key == keys[0]
        again.close()
        f.add(
            fig,
            "synarrow",
            t_open,
            "s",
            higher_better=False,
            note=f"VectorStore(path) loads the saved index and key map; close() (index "
            f"save) took {t_close:.2f} s; search ok: {ok}",
        )


# --------------------------------------------------------------------------
# 768 dims: recall and QPS
# --------------------------------------------------------------------------


def bench_vector_768(ctx: Ctx) -> list[Row]:
    """recall@10, insert_batch and single-query QPS on 768-dimensional vectors (smaller n)."""
    from synarrow import VectorStore

    f = Figures(ctx, "vector_768")
    dims = 768
    n = ctx.n(20_000, 3_000)
    nq = ctx.n(500, 100)
    data = mixture(n, dims, seed=3)
    queries = mixture(nq, dims, seed=4)
    truth = exact_top_k(data, queries)
    size = f"{n // 1000}k x {dims}"
    fig_rec = f"recall@10, defaults, {size}"
    fig_ins = f"insert_batch {size}"
    fig_q = f"search 1 query, k=10, {size}"
    raw: Any = None
    store: Any = None
    labels = np.arange(n, dtype=np.uint64)
    times: dict[str, list[float]] = {USEARCH: [], "synarrow": []}
    with ctx.tmpdir("vector768") as d:
        try:
            for rep in range(2):  # alternately, so load on the machine hits both alike
                with f.guard(fig_ins, USEARCH, "vectors/s"):
                    raw = raw_index(dims)
                    times[USEARCH].append(timed(lambda r=raw: r.add(labels, data)))
                with f.guard(fig_ins, "synarrow", "vectors/s", ref=USEARCH):
                    if store is not None:
                        close_quietly(store)
                    store = VectorStore(os.path.join(d, f"v{rep}.db"), dims)
                    times["synarrow"].append(
                        timed(lambda s=store: s.insert_batch(keys_for(n), data))
                    )
            if times[USEARCH]:
                f.add(
                    fig_ins,
                    USEARCH,
                    n / min(times[USEARCH]),
                    "vectors/s",
                    note=f"Index.add; {SETTINGS_TEXT}; best of 2",
                )
            if times["synarrow"]:
                f.add(
                    fig_ins,
                    "synarrow",
                    n / min(times["synarrow"]),
                    "vectors/s",
                    ref=USEARCH,
                    note="insert_batch, default settings; best of 2",
                )
            with f.guard(fig_rec, USEARCH):
                f.add(
                    fig_rec,
                    USEARCH,
                    recall(raw.search(queries, K).keys.tolist(), truth),
                    "",
                    note="same settings; context",
                )
            with f.guard(fig_rec, "synarrow"):
                f.add(
                    fig_rec,
                    "synarrow",
                    recall(found_rows(store.search_batch(queries, K)), truth),
                    "",
                    note=f"VectorStore(path, {dims}) defaults; {nq} queries",
                )
            with f.guard(fig_q, "synarrow", "queries/s", ref=USEARCH):
                r_raw = max(qps(lambda q: raw.search(q, K), queries) for _ in range(2))
                r_sa = max(qps(lambda q: store.search(q, K), queries) for _ in range(2))
                f.add(fig_q, USEARCH, r_raw, "queries/s", note="Index.search(q, 10)")
                f.add(
                    fig_q, "synarrow", r_sa, "queries/s", ref=USEARCH, note="store.search(q, k=10)"
                )
        finally:
            if store is not None:
                close_quietly(store)
    return f.rows()


# --------------------------------------------------------------------------
# Against the reference system's VectorStore
# --------------------------------------------------------------------------


def bench_vector_ref(ctx: Ctx) -> list[Row]:
    """synadb.VectorStore vs synarrow.VectorStore on the same data (n smaller: synadb is slow)."""
    from synarrow import VectorStore

    f = Figures(ctx, "vector_ref")
    dims = 128
    n = ctx.n(20_000, 5_000)
    nq = ctx.n(500, 100)
    data = mixture(n, dims, seed=5)
    queries = mixture(nq, dims, seed=6)
    keys = keys_for(n)
    truth = exact_top_k(data, queries)
    size = f"{n // 1000}k x {dims}"
    fig_ins = f"insert_batch {size} (vs reference)"
    fig_q = f"search 1 query, k=10, {size} (vs reference)"
    fig_rec = f"recall@10, {size} (vs reference)"
    notes = {
        "synadb": f"synadb VectorStore(path, dimensions={dims}), defaults (HNSW backend, "
        "sync_on_write=True); n kept small because synadb builds slowly",
        "synarrow": f"VectorStore(path, {dims}), defaults (one fsync per call)",
    }

    def measure(system: str, make: Callable[[str], Any], d: str) -> None:
        ref = None if system == "synadb" else "synadb"
        store = make(os.path.join(d, f"{system}.db"))
        try:
            with f.guard(fig_ins, system, "vectors/s", ref=ref):
                dt = timed(lambda s=store: s.insert_batch(keys, data))
                f.add(fig_ins, system, n / dt, "vectors/s", ref=ref, note=notes[system])
            with f.guard(fig_q, system, "queries/s", ref=ref):
                store.search(queries[0], K)  # synadb may build its index on first use
                rate = max(qps(lambda q: store.search(q, K), queries) for _ in range(2))
                f.add(fig_q, system, rate, "queries/s", ref=ref, note=f"{nq} queries")
            with f.guard(fig_rec, system, ref=ref):
                hits = [store.search(q, K) for q in queries]
                f.add(
                    fig_rec,
                    system,
                    recall(found_rows(hits), truth),
                    "",
                    ref=ref,
                    note="vs numpy brute force",
                )
        finally:
            close_quietly(store)

    with ctx.tmpdir("vector-ref") as d:
        with f.guard(fig_ins, "synadb", "vectors/s"):
            from synadb import VectorStore as ReferenceStore

            measure("synadb", lambda p: ReferenceStore(p, dimensions=dims, metric="cosine"), d)
        measure("synarrow", lambda p: VectorStore(p, dims), d)
    return f.rows()


BENCHMARKS = {
    "vector_128": bench_vector_128,
    "vector_768": bench_vector_768,
    "vector_ref": bench_vector_ref,
}

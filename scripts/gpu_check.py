#!/usr/bin/env python
"""Repeatable GPU check: run the GPU tests and the host-to-device benchmark, print figures.

Run from the repository root on a machine with an NVIDIA GPU and torch built with CUDA:

    python scripts/gpu_check.py            # 1 GiB history
    python scripts/gpu_check.py --quick    # 256 MiB history

Exit status: pytest's (0 when the GPU tests pass), 2 when no CUDA device is usable (the
script still prints what it found, so a run on the wrong machine is easy to spot).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def describe() -> bool:
    """Print the GPU stack; returns whether synarrow sees a usable GPU."""
    sys.path.insert(0, str(ROOT))
    from synarrow import gpu

    print(f"python {platform.python_version()} on {platform.node()}")
    for mod in ("numpy", "pyarrow", "torch", "cupy"):
        try:
            m = __import__(mod)
            print(f"  {mod:<8} {getattr(m, '__version__', '?')}")
        except ImportError:
            print(f"  {mod:<8} not installed")
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                print(f"  cuda:{i}   {props.name}, {props.total_memory / 2**30:.0f} GiB")
        print(f"  torch cuda {torch.version.cuda}, available: {torch.cuda.is_available()}")
    except ImportError:
        pass
    backends = gpu.available_backends()
    print(f"  synarrow.gpu backends: {backends or 'none'}")
    return bool(backends)


def run_tests() -> int:
    """The GPU-marked tests plus the CPU-side export and tensor tests."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "tests/gpu", "tests/tensor"]
    print("\n$ " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def run_benchmark(quick: bool) -> None:
    """The host-to-device figures (bench_tensor.bench_gpu), printed as a table."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_tensor import bench_gpu
    from benchmarks.common import Ctx, fmt_value

    ctx = Ctx(quick=quick)
    rows = bench_gpu(ctx)
    limit = next((r.value for r in rows if r.system == "pinned torch copy"), None)
    print("\n| figure | system | GB/s | vs pinned | notes |\n|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r.value / limit:.2f}x" if r.value and limit else ""
        print(f"| {r.figure} | {r.system} | {fmt_value(r.value, r.unit)} | {ratio} | {r.note} |")


def main(argv: list[str] | None = None) -> int:
    """Describe the machine, run the tests, run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    ap.add_argument("--no-tests", action="store_true", help="only the benchmark")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    has_gpu = describe()
    rc = 0 if args.no_tests else run_tests()
    run_benchmark(args.quick)
    if not has_gpu:
        print("\nno CUDA device usable: GPU tests were skipped and no figures measured")
        return 2
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

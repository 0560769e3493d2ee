"""A 200 MB model is saved and loaded with memory bounded by the chunk size, not the model.

Measured in a fresh subprocess, with tracemalloc (Python allocations: buffers, bytes) and
``ru_maxrss`` (the resident peak of the whole process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

MB = 1024 * 1024

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, resource, sys, tracemalloc
    import synarrow

    root, chunk = sys.argv[1], int(sys.argv[2])
    size = 200 * 1024 * 1024
    src = os.path.join(root, "model.bin")
    sha = hashlib.sha256()
    with open(src, "wb") as f:   # written in small pieces: nothing big in memory
        block = os.urandom(1024 * 1024)
        for i in range(size // len(block)):
            piece = bytes([i % 256]) + block[1:]
            sha.update(piece)
            f.write(piece)
    expected = sha.hexdigest()

    def rss():
        # VmHWM: this program's own peak (ru_maxrss keeps a forking parent's across exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    reg = synarrow.ModelRegistry(os.path.join(root, "models.db"), chunk_size=chunk)
    reg.save_model("warmup", b"x" * 10)          # imports and first-use costs first
    out = {}
    rss0 = rss()
    tracemalloc.start()
    info = reg.save_model("big", src, {"n": 1})
    out["save_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    dest, info2 = reg.load_model("big", path=os.path.join(root, "copy.bin"))
    out["load_path_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["rss_growth_streaming"] = rss() - rss0
    out["checksum_ok"] = info.checksum == expected == info2.checksum
    out["size"] = info.size_bytes
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    out["copy_ok"] = h.hexdigest() == expected
    rss1 = rss()
    tracemalloc.start()
    data, _ = reg.load_model("big")
    out["load_bytes_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["rss_growth_bytes"] = rss() - rss1
    out["bytes_ok"] = len(data) == size and hashlib.sha256(data).hexdigest() == expected
    reg.close()
    print(json.dumps(out))
    """
)


def test_200mb_model_bounded_memory(tmp_path: Path) -> None:
    chunk = 4 * MB
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(chunk)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["checksum_ok"] and out["copy_ok"] and out["bytes_ok"]
    assert out["size"] == 200 * MB
    bound = 2 * chunk + 1 * MB  # two alternating buffers, plus small objects
    assert out["save_peak"] < bound, out
    assert out["load_path_peak"] < bound, out
    # the whole process: two buffers and thread stacks, never anything near the model size
    assert out["rss_growth_streaming"] < 2 * chunk + 24 * MB, out
    # into memory the model is held once, not twice
    assert 200 * MB <= out["load_bytes_peak"] < 200 * MB + bound, out
    assert out["rss_growth_bytes"] < 200 * MB + 2 * chunk + 24 * MB, out

"""Peak resident memory of training from a .npy file streamed from disk, at 1× and 10× the data.

Each size trains one epoch in a fresh process (``data.stream=true``) that reports
its own peak RSS, so the figures do not mix. A streamed split keeps one chunk of
rows in memory at a time, so the peak should not grow with the file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = """
import json, sys, tempfile, time, vaekit
path, batch = sys.argv[1], int(sys.argv[2])
sets = {"data.name": path, "data.stream": True, "train.epochs": 1, "train.batch_size": batch,
        "train.tensorboard": False, "model.latent_dim": 20}
with tempfile.TemporaryDirectory() as out:
    t0 = time.perf_counter()
    run = vaekit.fit(vaekit.Config(out=out).override([f"{k}={json.dumps(v)}" for k, v in sets.items()]), progress=False)
    seconds = time.perf_counter() - t0
# VmHWM, not getrusage's ru_maxrss: that one carries the parent's high-water mark across fork and exec
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": hwm_kb / 1024,
                  "samples_per_s": run.history[0]["samples_per_s"], "seconds": seconds}))
"""


def write_npy(path: Path, rows: int, seed: int = 0, block: int = 60000) -> None:
    """Random 28×28 uint8 images, written a block at a time with plain writes so this process stays small too."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (rows, 28, 28)})
        for i in range(0, rows, block):
            f.write(rng.integers(0, 256, (min(block, rows - i), 28, 28), dtype=np.uint8).tobytes())


def measure(folder: Path, rows: int = 60000, factors=(1, 10), batch_size: int = 1024, log=print) -> dict:
    out = {}
    for f in factors:
        path = folder / f"random-{f}x.npy"
        write_npy(path, rows * f)
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(batch_size)], capture_output=True, text=True)
        path.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"streamed training on {rows * f} rows failed: {done.stderr[-2000:]}")
        out[f] = json.loads(done.stdout.strip().splitlines()[-1]) | {"rows": rows * f, "file_mb": rows * f * 784 / 2**20}
        log(f"streaming, {f}× ({rows * f:,} rows, {out[f]['file_mb']:.0f} MB): peak RSS {out[f]['peak_rss_mb']:.0f} MB, "
            f"{out[f]['samples_per_s']:,.0f} samples/s")
    out["growth"] = out[factors[-1]]["peak_rss_mb"] / out[factors[0]]["peak_rss_mb"]
    return out

"""Training speed in later epochs with and without ``train.flush_denormal``.

Adam's moments of weights that never get a gradient (MNIST's blank border pixels) decay
into the denormal range after ~800 steps and stay there, and a CPU computes on denormals
slowly. Each setting trains a few epochs of the 784-400-20 MLP VAE at batch 128 in a fresh
process (threads take the floating-point mode when they are created), the two settings
taking turns within a round.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

CHILD = """
import json, sys, tempfile, vaekit
sys.path.insert(0, sys.argv[1])
from throughput import one_epoch
sets = one_epoch(sys.argv[2], None if sys.argv[3] == "-" else sys.argv[3], 128)
with tempfile.TemporaryDirectory() as out:
    run = vaekit.fit(vaekit.Config(out=out).override(sets + [f"train.epochs={sys.argv[4]}", f"train.flush_denormal={sys.argv[5]}"]),
                     progress=False)
print(json.dumps([h["samples_per_s"] for h in run.history]))
"""


def measure(here: str, source: str, data_dir: str | None, epochs: int = 4, rounds: int = 3, log=print) -> dict:
    """Per setting, the median samples/s of the first and of the last epoch; the ratio of the last epochs within a round."""
    runs: dict[str, list[list[float]]] = {"true": [], "false": []}
    for r in range(rounds):
        for flush in runs:
            done = subprocess.run([sys.executable, "-c", CHILD, here, source, data_dir or "-", str(epochs), flush],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"training with flush_denormal={flush} failed: {done.stderr[-2000:]}")
            runs[flush].append(json.loads(done.stdout.strip().splitlines()[-1]))
            log(f"denormals, round {r + 1}/{rounds}, flush_denormal={flush}: "
                + ", ".join(f"{v:,.0f}" for v in runs[flush][-1]) + " samples/s by epoch")
    out = {f"flush_{k}": {"first_epoch_samples_per_s": statistics.median(e[0] for e in v),
                          "last_epoch_samples_per_s": statistics.median(e[-1] for e in v)} for k, v in runs.items()}
    out["epochs"] = epochs
    out["last_epoch_ratio"] = statistics.median(a[-1] / b[-1] for a, b in zip(runs["true"], runs["false"]))
    return out

"""Training throughput of the MLP VAE under torchrun: 2 processes (DDP, gloo) against 1 on the same cores.

Both runs go through ``torchrun ... -m vaekit train`` with the same global batch;
the cores are split between the processes (OMP_NUM_THREADS), so the figure says
what DistributedDataParallel costs or gains on one machine, not what more
hardware would give.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from throughput import one_epoch


def torchrun_epoch(nproc: int, data: str, data_dir: str | None, batch_size: int) -> float:
    """Samples/s of one epoch (rank 0's record) with ``nproc`` processes."""
    threads = max(1, (os.cpu_count() or 1) // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "vaekit", "train", "--out", tmp, "--no-progress"]
        cmd += [a for s in one_epoch(data, data_dir, batch_size) for a in ("--set", s)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"torchrun with {nproc} processes failed: {done.stderr[-2000:]}")
        return json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[0])["samples_per_s"]


def measure(data: str, data_dir: str | None, batch_sizes=(128, 1024), log=print) -> dict:
    out = {}
    for b in batch_sizes:
        one, two = torchrun_epoch(1, data, data_dir, b), torchrun_epoch(2, data, data_dir, b)
        out[b] = {"one_process_samples_per_s": one, "two_processes_samples_per_s": two, "two_over_one": two / one}
        log(f"DDP, batch {b}: 1 process {one:,.0f}/s, 2 processes {two:,.0f}/s ({two / one:.2f}×)")
    return out

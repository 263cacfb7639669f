"""`torchrun` training with DistributedDataParallel on CPU (gloo): two processes train the model one process does."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaekit

HERE = Path(__file__).parent
# val_size 160 leaves 1457 training rows: with batch 56 the last batch holds one row, so rank 1 gets none
SETS = ["data.name=digits", "data.val_size=160", "train.batch_size=56", "train.epochs=3", "model.latent_dim=4",
        "train.tensorboard=false"]
AE = SETS + ["model.kind=ae", "data.binarize=none"]  # no noise at all: two processes must match one to rounding


def torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def history(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def two_process_run(tmp_path, sets):
    params = tmp_path / "params"
    params.mkdir()
    torchrun(HERE / "ddp_worker.py", tmp_path / "two", params, *sets, cwd=tmp_path)
    return tmp_path / "two", [load_file(str(params / f"rank{r}.safetensors")) for r in (0, 1)]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    two, (rank0, rank1) = two_process_run(tmp_path, AE)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # all-reduced gradients keep the replicas identical
    one = vaekit.fit(vaekit.Config(out=str(tmp_path / "one")).override(AE))
    for k, v in one.model.state_dict().items():
        assert torch.allclose(rank0[k], v, atol=1e-4), k  # only the order of the gradient sums differs
    h1, h2 = history(tmp_path / "one"), history(two)
    assert [h["step"] for h in h1] == [h["step"] for h in h2] == [27, 54, 81]
    for a, b in zip(h1, h2):
        for key in ("train_loss", "val_loss"):
            assert abs(a[key] - b[key]) < 1e-4 * abs(a[key]), (key, a[key], b[key])
    assert h2[0]["train_loss"] > h2[-1]["train_loss"] + 1  # it did train
    # one set of files, the single-process one: rank 1 wrote nothing
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_a_vae_follows_the_single_process_loss_curve(tmp_path):
    two, (rank0, rank1) = two_process_run(tmp_path, SETS)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    vaekit.fit(vaekit.Config(out=str(tmp_path / "one")).override(SETS))
    for a, b in zip(history(tmp_path / "one"), history(two)):  # ε and binarization draws differ: close, not equal
        assert abs(a["train_loss"] - b["train_loss"]) < 0.03 * a["train_loss"], (a["train_loss"], b["train_loss"])


def test_a_two_process_run_resumes_as_one_process(tmp_path):
    sets = [a for s in SETS for a in ("--set", s)] + ["--no-progress"]
    done = torchrun("-m", "vaekit", "train", "--out", "run", *sets, "--set", "train.epochs=2", cwd=tmp_path)
    assert done.stdout.count("completed: 2 epochs") == 1  # rank 0 alone reports
    first = history(tmp_path / "run")
    resumed = subprocess.run([sys.executable, "-m", "vaekit", "train", "--resume", "--out", "run", "--set", "train.epochs=4",
                              "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    h = history(tmp_path / "run")
    assert h[:2] == first  # the two-process epochs are kept as they were
    assert [r["step"] for r in h] == [27, 54, 81, 108]
    assert h[3]["train_loss"] < h[1]["train_loss"] < h[0]["train_loss"]  # it continued from the trained weights
    assert vaekit.load(tmp_path / "run").config.train.epochs == 4

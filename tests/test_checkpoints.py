"""Checkpoints that cannot be left half-written, trainer states that cannot crash the process, and the run lock."""
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit import Config, VaekitError, files, fit
from vaekit.trainstate import check_optimizer_state

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_FILES = ("trainer.pt", "model.safetensors", "metrics.jsonl")
SETS = {"train.epochs": 2, "train.batch_size": 64, "train.tensorboard": False, "train.kl_warmup_steps": 20,
        "train.checkpoint_steps": 5, "model.latent_dim": 4, "model.hidden": [32]}
KILL = """
import json, os, sys
from vaekit import Config, files, fit
out, target, sets = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
seen = [0]
def hook(event, path):
    if path.name in {names!r}:
        seen[0] += 1
        if seen[0] == target:
            os._exit(137)  # as kill -9 would: no clean-up runs
files.fault_hook = hook
fit(Config(out=out).override([f"{{k}}={{json.dumps(v)}}" for k, v in sets.items()]), progress=False)
""".format(names=set(CHECKPOINT_FILES))


def config(out, **sets) -> Config:
    return Config(out=str(out)).override([f"{k}={json.dumps(v)}" for k, v in {**SETS, **sets}.items()])


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(run: Path) -> dict[str, bytes]:
    """The run's files (not the lock or a temporary file mid-write)."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and not p.name.startswith(".")}


def untimed(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")} for h in history]


def assert_same_run(a: Path, b: Path):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ha, hb = ([json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (a, b))
    assert untimed(ha) == untimed(hb)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    fit(config(out), progress=False)
    return out


# -- a kill or a full disk between any two writes of a checkpoint -------------------------------------------------------

@pytest.mark.parametrize("event", range(1, 7))
def test_a_kill_at_any_write_of_a_checkpoint_resumes_bit_identical(tmp_path, uninterrupted, event):
    out = tmp_path / "run"
    target = 2 * 6 + event  # the third checkpoint's writes: trainer.pt, model.safetensors, metrics.jsonl, each written then renamed
    r = subprocess.run([sys.executable, "-c", KILL, str(out), str(target), json.dumps(SETS)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 137, r.stderr
    state = torch.load(out / "trainer.pt", weights_only=True)
    assert state["step"] == (15 if event >= 2 else 10)  # trainer.pt is the checkpoint: renamed (event 2) means taken
    fit(config(out), resume=True, progress=False)
    assert_same_run(uninterrupted, out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # what the killed writer left is gone


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_full_disk_at_any_write_is_one_line_and_loses_nothing(tmp_path, uninterrupted, monkeypatch, name):
    out = tmp_path / "run"
    seen = {"n": 0, "before": None}

    def full(event, path):
        if event == "written" and path.name == name:
            seen["n"] += 1
            if seen["n"] == 3:
                seen["before"] = snapshot(out)
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "fault_hook", full)
    with pytest.raises(VaekitError, match=rf"{name}: cannot write \(No space left on device\); the previous version"):
        fit(config(out), progress=False)
    assert snapshot(out) == seen["before"]  # every file as it was before the failed write
    monkeypatch.setattr(files, "fault_hook", None)
    fit(config(out), resume=True, progress=False)
    assert_same_run(uninterrupted, out)


def test_files_follow_the_umask_and_old_temporaries_are_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".trainer.pt.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    mine = out / "notes.tmp"
    mine.write_text("the user's")
    old = os.umask(0o022)
    try:
        fit(config(out, **{"train.epochs": 1}), progress=False)
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors", "trainer.pt", "metrics.jsonl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    assert not stale.exists() and mine.exists()


# -- trainer states of another model, or crafted -----------------------------------------------------------------------

def test_a_trainer_state_of_another_model_is_refused_not_a_crash(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out, latent in ((a, 8), (b, 20)):
        r = cli("train", "--out", str(out), "--epochs", "1", "--latent-dim", str(latent), "--no-progress")
        assert r.returncode == 0, r.stderr
    (b / "trainer.pt").write_bytes((a / "trainer.pt").read_bytes())
    before = snapshot(b)
    for extra in ([], ["--set", "train.fused=false"]):
        r = cli("train", "--out", str(b), "--epochs", "2", "--latent-dim", "20", "--resume", "--no-progress", *extra)
        one_line_error(r, str(b / "trainer.pt"), "shape")
    assert snapshot(b) == before


def _optimizer_with_state():
    p = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.Adam(p, fused=True)
    sum(x.sum() for x in p).backward()
    opt.step()
    return opt


def _crafted(change):
    state = _optimizer_with_state().state_dict()
    change(state)
    return state


@pytest.mark.parametrize("change, message", [
    (lambda s: s["state"][0].update(exp_avg=torch.zeros(30, 2)), r"'exp_avg' of parameter 0 has shape \(30, 2\)"),
    (lambda s: s["state"][1].update(exp_avg_sq=torch.zeros(3, dtype=torch.float64)), r"'exp_avg_sq' of parameter 1 .*float64"),
    (lambda s: s["param_groups"][0].update(params=[0]), r"group 0 holds 1 parameters, the model's has 2"),
    (lambda s: s["param_groups"].append(dict(s["param_groups"][0])), r"2 parameter groups, the optimizer has 1"),
    (lambda s: s["state"].update({7: s["state"][0]}), r"state for parameter 7, which no parameter group holds"),
    (lambda s: s["state"][0].update(step=torch.zeros(5)), r"'step' of parameter 0 has shape \(5,\)"),
    (lambda s: s["state"].update({0: [1, 2]}), r"the state of parameter 0 is a list"),
    (lambda s: s.pop("state"), r"expected an optimizer state dict"),
])
def test_every_tensor_of_an_optimizer_state_is_checked(change, message):
    with pytest.raises(VaekitError, match=message):
        check_optimizer_state(_optimizer_with_state(), _crafted(change))
    check_optimizer_state(_optimizer_with_state(), _optimizer_with_state().state_dict())  # its own passes


@pytest.mark.parametrize("content, message", [
    ({}, "has no 'optimizer'"),
    ([1, 2], "the trainer state is a list"),
    ("weights", "the trainer state is a str"),
])
def test_a_trainer_state_that_is_not_vaekits_is_one_line(tmp_path, content, message):
    out = tmp_path / "run"
    fit(config(out, **{"train.epochs": 1}), progress=False)
    torch.save(content, out / "trainer.pt")
    before = snapshot(out)
    r = cli("train", "--out", str(out), "--resume", "--no-progress", *[a for k, v in SETS.items() for a in ("--set", f"{k}={json.dumps(v)}")])
    one_line_error(r, str(out / "trainer.pt"), message)
    assert snapshot(out) == before


class _Payload:
    """Unpickling this would create the file named by its argument: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_trainer_state_holding_code_is_refused_and_the_code_never_runs(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    fit(config(out, **{"train.epochs": 1}), progress=False)
    torch.save({"optimizer": _Payload(str(marker))}, out / "trainer.pt")
    before = snapshot(out)
    r = cli("train", "--out", str(out), "--resume", "--no-progress", *[a for k, v in SETS.items() for a in ("--set", f"{k}={json.dumps(v)}")])
    one_line_error(r, str(out / "trainer.pt"), "it holds more than tensors and numbers")
    assert not marker.exists() and snapshot(out) == before
    r = cli("sample", str(out), "--out", str(tmp_path / "pictures"))  # commands that only need the weights never read it
    assert r.returncode == 0 and not marker.exists(), r.stderr


@pytest.mark.parametrize("field, value, message", [
    ("step", -3, r"'step' is -3, expected a count"),
    ("partial", torch.zeros(2, 9), r"'partial' is a Tensor"),
    ("noise", torch.zeros(3, dtype=torch.uint8), r"'noise' is a Tensor, expected a generator state"),
    ("stopped", "whenever", r"'stopped' is 'whenever'"),
    ("weights", {"encoder.net.0.weight": torch.zeros(1)}, r"tensor 'encoder.net.0.weight' has shape \(1,\)"),
])
def test_every_field_of_a_trainer_state_is_checked(tmp_path, field, value, message):
    out = tmp_path / "run"
    fit(config(out, **{"train.epochs": 1}), progress=False)
    state = torch.load(out / "trainer.pt", weights_only=True)
    state[field] = value
    torch.save(state, out / "trainer.pt")
    with pytest.raises(VaekitError, match=message):
        fit(config(out), resume=True, progress=False)


# -- resume and the stored run -----------------------------------------------------------------------------------------

def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--epochs", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    before = snapshot(out)
    one_line_error(cli("train", "--out", str(out), "--epochs", "1", "--resume", "--no-progress"),
                   "train.epochs=1", "already done 2 epochs")
    assert snapshot(out) == before


# -- the run lock --------------------------------------------------------------------------------------------------------

def test_a_second_trainer_on_the_same_run_is_refused_and_a_dead_ones_lock_taken_over(tmp_path):
    out = tmp_path / "run"
    with files.RunLock(out):
        r = cli("train", "--out", str(out), "--epochs", "1", "--no-progress")
        one_line_error(r, str(out), f"PID {os.getpid()}", "another vaekit process")
        assert not (out / "config.json").exists()
    (out / ".lock").write_text("999999\n")  # left by a process that died: its flock went with it
    r = cli("train", "--out", str(out), "--epochs", "1", "--no-progress")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("optimizer, lr", [("adam", "1"), ("adam", "1e30"), ("sgd", "10"), ("sgd", "1e30"), ("adagrad", "1e10")])
def test_a_diverging_run_keeps_only_checkpoints_whose_weights_give_a_finite_loss(tmp_path, capsys, optimizer, lr):
    from vaekit.cli import main

    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--optimizer", optimizer, "--lr", lr, "--epochs", "3",
                 "--set", "train.checkpoint_steps=1", "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and ("give a non-finite loss" in lines[0] or "loss became" in lines[0]), lines
    if not (run / "trainer.pt").exists():
        assert "no checkpoint had been written" in lines[0]
        return
    assert "the last good checkpoint" in lines[0]
    model = vaekit.load(run)
    result = vaekit.evaluate(model, k=20, subset=50, baselines=False)
    assert math.isfinite(result["elbo"]) and math.isfinite(result["log_px"])
    assert main(["sample", str(run), "--n", "4"]) == 0

import json
import subprocess
import sys

import pytest
import torch

import vaekit
from vaekit.cli import main


def test_train_and_resume_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--epochs", "2", "--latent-dim", "3", "--hidden", "32", "--no-progress",
            "--set", "train.tensorboard=false"]
    assert main(args) == 0
    assert "test loss" in capsys.readouterr().out
    assert vaekit.read_config(out).model.latent_dim == 3
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]
    model = vaekit.load(out)
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("args, message", [
    (["--set", "model.latnt_dim=3"], "unknown config key 'model.latnt_dim'"),
    (["--latent-dim", "x"], "--latent-dim: 'x' is not a valid model.latent_dim"),
    (["--data", "nowhere.npy"], "data 'nowhere.npy': neither a built-in data set"),
    (["--model", "gan"], "model.kind: expected one of 'ae', 'dae', 'vae', 'hvae', 'cvae', got 'gan'"),
])
def test_bad_input_exits_non_zero_with_one_line(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "r"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error: ") and message in err and err.count("\n") == 1


def test_resume_without_a_run(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no run to resume" in capsys.readouterr().err


def test_entry_point_runs_as_a_module(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vaekit", "train", "--out", str(tmp_path / "r"), "--set", "train.epochs=1",
                        "--set", "model.hidden=[16]", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = subprocess.run([sys.executable, "-m", "vaekit", "train", "--config", str(tmp_path / "missing.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.json: cannot read config file" in bad.stderr and "Traceback" not in bad.stderr

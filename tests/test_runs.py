"""Opening, resuming and moving runs: the checks that keep a run directory trustworthy."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vaekit
from vaekit import Config, VaekitError, fit

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def _small(out, **sets):
    base = {"train.epochs": 1, "train.tensorboard": False, "model.latent_dim": 3, "model.hidden": [32], **sets}
    return Config(out=str(out)).override([f"{k}={json.dumps(v)}" for k, v in base.items()])


def _digits():
    from vaekit.data.parts import materialize

    return tuple(materialize(p)[0] for p in vaekit.load_dataset(vaekit.DataConfig()).parts)


def test_an_autoencoder_run_written_before_objectives_were_objects_still_opens(tmp_path):
    fit(_small(tmp_path / "ae", **{"model.kind": "ae"}), progress=False)
    cfg = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert cfg["model"]["objective"] == "reconstruction"
    cfg["model"]["objective"] = "elbo"  # what every kind wrote before
    (tmp_path / "ae" / "config.json").write_text(json.dumps(cfg))
    model = vaekit.load(tmp_path / "ae")
    assert type(model.objective).__name__ == "Reconstruction"


def test_resume_refuses_weights_without_their_trainer_state_and_restarts_a_run_with_no_checkpoint(tmp_path):
    fit(_small(tmp_path / "r"), progress=False)
    (tmp_path / "r" / "trainer.pt").unlink()
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(VaekitError, match="model.safetensors is there but trainer.pt is missing"):
        fit(_small(tmp_path / "r", **{"train.epochs": 2}), resume=True, progress=False)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before  # nothing overwritten
    # a run that stopped before its first checkpoint: config.json alone; --resume takes that config, not the defaults
    crashed = tmp_path / "c"
    crashed.mkdir()
    (crashed / "config.json").write_text(_small(crashed, **{"model.latent_dim": 5}).to_json())
    r = _cli("train", "--out", str(crashed), "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert vaekit.load(crashed).latent_dim == 5


def test_resuming_with_another_step_than_the_run_was_trained_with_is_refused(tmp_path):
    from vaekit.baselines import WakeSleepStep

    fit(_small(tmp_path / "ws", **{"train.max_steps": 5, "train.epochs": 3}), step=WakeSleepStep, progress=False)
    with pytest.raises(VaekitError, match="written by the step WakeSleepStep; resume it with the same step, not GradientStep"):
        fit(_small(tmp_path / "ws", **{"train.epochs": 3}), resume=True, progress=False)
    run = fit(_small(tmp_path / "ws", **{"train.epochs": 3}), resume=True, step=WakeSleepStep, progress=False)
    assert run.history[-1]["step"] == 3 * 12  # digits: 12 batches an epoch


def test_flags_override_a_preset_even_where_they_change_what_the_preset_sets(tmp_path):
    r = _cli("train", "--preset", "aevb-mnist", "--data", "digits", "--net", "conv", "--epochs", "1", "--out", str(tmp_path / "p"),
             "--no-progress", "--set", "train.tensorboard=false")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["model"]["net"] == "conv" and cfg["model"]["hidden"] == [400]  # the preset's [500] MLP widths dropped
    assert cfg["model"]["activation"] == "tanh" and cfg["train"]["optimizer"] == "adagrad"  # the rest of it kept


def test_a_command_on_a_file_or_a_missing_run_leaves_nothing_behind(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    for target, message in ((tmp_path / "model.pt", "a pickle"), (tmp_path / "nope", "no such run directory")):
        r = _cli("sample", str(target))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nope").exists()


def test_a_run_fitted_in_memory_moves_with_its_data_and_refuses_a_mismatching_module(tmp_path):
    x_train, x_val, x_test = _digits()

    def vae(k=3):
        return vaekit.VAE(nn.Sequential(nn.Flatten(), nn.Linear(64, 2 * k)), nn.Sequential(nn.Linear(k, 64), nn.Unflatten(1, (1, 8, 8))),
                          latent_dim=k)

    fit(vae(), x_train, val=x_val, test=x_test, epochs=1, out=tmp_path / "a", progress=False)
    shutil.move(tmp_path / "a", tmp_path / "b")
    model = vaekit.load(tmp_path / "b", model=vae())
    assert vaekit.evaluate(model, k=10, baselines=False)["n"] == len(x_test)  # its data.npz found where the run is now
    with pytest.raises(VaekitError, match="the run's model.latent_dim is 3, the model given has 4"):
        vaekit.load(tmp_path / "b", model=vae(4))
    with pytest.raises(VaekitError, match="expected a vaekit model"):
        vaekit.load(tmp_path / "b", model=nn.Linear(2, 2))
    alone = fit(vae(), x_train, epochs=1, progress=False).model
    with pytest.raises(VaekitError, match="fitted on data in memory without out="):
        vaekit.evaluate(alone)
    as_bytes = (x_test * 16).round().to(torch.uint8)  # 8-bit rows are read as 0..255 intensities
    assert vaekit.evaluate(alone, as_bytes, k=10, baselines=False)["n"] == len(x_test)


def test_own_split_files_replace_those_of_a_presplit_npz_and_keep_their_own_scale(tmp_path):
    x_train, x_val, x_test = (a.numpy() for a in _digits())
    np.savez(tmp_path / "s.npz", train=x_train, valid=x_val, test=x_test)
    np.save(tmp_path / "bytes.npy", (x_test[:20] * 255).round().astype(np.uint8))
    from vaekit.data.parts import materialize

    data = vaekit.load_dataset(vaekit.DataConfig(name=str(tmp_path / "s.npz"), test=str(tmp_path / "bytes.npy")))
    assert len(data.test) == 20 and len(data.val) == len(x_val)
    got = materialize(data.test)[0].numpy()
    assert got.max() <= 1 and np.allclose(got, x_test[:20], atol=1 / 255)

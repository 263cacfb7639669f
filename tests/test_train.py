import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit.report import write_report
from vaekit import Config, VaekitError, fit
from vaekit.fused import FusedStep
from vaekit.models import VAE

TIMING = ("seconds", "samples_per_s")


def small(out, **sets) -> Config:
    base = {"train.epochs": 3, "train.batch_size": 64, "train.tensorboard": False, "train.kl_warmup_steps": 40,
            "model.latent_dim": 4, "model.hidden": [64]}
    base.update(sets)
    return Config(out=str(out)).override([f"{k}={json.dumps(v)}" for k, v in base.items()])


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def untimed(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def test_run_directory_and_metrics(tmp_path):
    run = fit(small(tmp_path / "r"))
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "model.safetensors", "trainer.pt", "metrics.jsonl", "summary.json"} <= names
    assert not names & {"report.html", "samples.png", "curves.png"}  # the library draws only when asked (the CLI asks)
    lines = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    assert {"train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "seconds", "samples_per_s"} <= set(lines[0])
    for l in lines:
        assert l["train_loss"] == pytest.approx(l["train_recon"] + l["kl_weight"] * l["train_kl"], rel=0.05)
    assert lines[-1]["val_loss"] < lines[0]["val_loss"]
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"]["input_shape"] == [1, 8, 8] and cfg["model"]["likelihood"] == "bernoulli" and cfg["data"]["binarize"] == "dynamic"
    # the loaded model is the trained one
    model = vaekit.load(tmp_path / "r")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.encode(x).mean, run.model.eval().encode(x).mean)
    assert model.config == run.config


def test_two_runs_with_one_seed_give_identical_metrics(tmp_path):
    a, b = fit(small(tmp_path / "a")), fit(small(tmp_path / "b"))
    assert untimed(a.history) == untimed(b.history) and a.test == b.test
    assert same_weights(tmp_path / "a", tmp_path / "b")
    c = fit(small(tmp_path / "c", **{"train.seed": 1}))
    assert untimed(c.history) != untimed(a.history)


def test_resume_after_max_steps_is_bit_identical(tmp_path):
    full = fit(small(tmp_path / "full"))
    part = fit(small(tmp_path / "part", **{"train.max_steps": 30}))  # mid-way through epoch 2
    assert part.stopped == "max_steps" and len(part.history) == 1
    resumed = fit(small(tmp_path / "part"), resume=True)
    assert same_weights(tmp_path / "full", tmp_path / "part")
    assert untimed(resumed.history) == untimed(full.history)


def test_resume_after_an_interruption_is_bit_identical(tmp_path, monkeypatch):
    fit(small(tmp_path / "full"))
    calls = {"n": 0}
    step = torch.optim.Adam.step

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 35:
            raise KeyboardInterrupt
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(small(tmp_path / "part", **{"train.checkpoint_steps": 10}))
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    state = torch.load(tmp_path / "part" / "trainer.pt", weights_only=True)
    assert state["step"] == 30  # the last checkpoint before the interruption
    fit(small(tmp_path / "part", **{"train.checkpoint_steps": 10}), resume=True)
    assert same_weights(tmp_path / "full", tmp_path / "part")


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(tmp_path):
    fit(small(tmp_path / "r", **{"train.epochs": 1}))
    with pytest.raises(VaekitError, match="already holds a run; resume it with --resume"):
        fit(small(tmp_path / "r", **{"train.epochs": 1}))
    with pytest.raises(VaekitError, match="cannot resume with model.latent_dim=5; the run was made with 4"):
        fit(small(tmp_path / "r", **{"model.latent_dim": 5}), resume=True)
    run = fit(small(tmp_path / "r", **{"train.epochs": 2}), resume=True)  # more epochs is allowed
    assert [h["epoch"] for h in run.history] == [1, 2]


@pytest.mark.parametrize("by_hand", [True, False])
def test_nan_loss_is_reported_with_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, by_hand):
    fit(small(tmp_path / "good", **{"train.max_steps": 15, "train.fused": by_hand}))
    calls = {"n": 0}

    def poison(terms):
        calls["n"] += 1
        return terms * float("nan") if calls["n"] >= 18 else terms

    if by_hand:  # the hand-derived step the default MLP VAE trains with
        step = FusedStep.__call__
        monkeypatch.setattr(FusedStep, "__call__", lambda self, *a: poison(step(self, *a)))
    else:
        loss = VAE.loss

        def poisoned(self, x, **kw):
            out = loss(self, x, **kw)
            if self.training:
                out.loss = poison(out.loss)
            return out

        monkeypatch.setattr(VAE, "loss", poisoned)
    with pytest.raises(VaekitError, match=r"loss became nan at step 18 \(epoch 1\).*last good checkpoint"):
        fit(small(tmp_path / "bad", **{"train.checkpoint_steps": 5, "train.fused": by_hand}))
    assert torch.load(tmp_path / "bad" / "trainer.pt", weights_only=True)["step"] == 15
    assert same_weights(tmp_path / "good", tmp_path / "bad")


def test_early_stopping_keeps_the_best_weights(tmp_path):
    run = fit(small(tmp_path / "r", **{"train.epochs": 40, "train.early_stopping": 1, "train.lr": 0.05}))
    assert run.stopped == "early_stopping" and len(run.history) < 40
    best = min(run.history, key=lambda h: h["val_loss"])
    assert run.history[-1]["val_loss"] >= best["val_loss"]
    from vaekit.evaluation import mean_loss

    assert mean_loss(run.model, vaekit.load_dataset(run.config.data).val)["loss"] != pytest.approx(run.history[-1]["val_loss"])


@pytest.mark.parametrize("kind, optimizer", [("ae", "sgd"), ("dae", "adagrad"), ("vae", "adam")])
def test_every_model_and_optimizer_trains(tmp_path, kind, optimizer):
    lr = {"sgd": 0.01, "adagrad": 0.05, "adam": 0.003}[optimizer]
    run = fit(small(tmp_path / kind, **{"model.kind": kind, "train.optimizer": optimizer, "train.lr": lr,
                                         "train.weight_decay": 1e-4, "train.grad_clip": 10.0}))
    assert run.history[-1]["val_loss"] < run.history[0]["val_loss"]
    write_report(run.dir, run.model, run.data)
    assert ("samples.png" in {p.name for p in (tmp_path / kind).iterdir()}) == (kind == "vae")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    fit(small(tmp_path / "a", **{"train.epochs": 1}))
    fit(small(tmp_path / "b", **{"train.epochs": 1, "model.hidden": [32]}))
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    with pytest.raises(VaekitError, match=r"model.safetensors: tensor 'encoder.net.0.weight' has shape \(64, 64\), the architecture in config.json needs \(32, 64\)"):
        vaekit.load(tmp_path / "b")


def test_a_pickle_is_never_loaded(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(VaekitError, match="model.pt: a pickle .* unpickling can run arbitrary code"):
        vaekit.load(tmp_path / "model.pt")
    with pytest.raises(VaekitError, match="no such run directory"):
        vaekit.load(tmp_path / "missing")


def test_conv_gaussian_on_a_table_is_a_clear_error(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n" + "\n".join(f"{i},{i * 2}" for i in range(20)) + "\n")
    with pytest.raises(VaekitError, match="model.net=conv needs image data"):
        fit(small(tmp_path / "r", **{"data.name": str(tmp_path / "t.csv"), "model.net": "conv", "model.hidden": [400]}))
    run = fit(small(tmp_path / "r2", **{"data.name": str(tmp_path / "t.csv"), "train.epochs": 2}))
    assert run.config.model.likelihood == "gaussian" and run.config.data.binarize == "none"


def test_streamed_npy_trains_like_the_same_data_in_memory(tmp_path):
    import numpy as np

    x = (vaekit.load_dataset(vaekit.DataConfig()).train.x[:, 0] * 16).clamp(max=255).to(torch.uint8).numpy()
    np.save(tmp_path / "d.npy", x)
    sets = {"data.name": str(tmp_path / "d.npy"), "data.test_size": 100, "data.val_size": 100, "train.epochs": 2}
    streamed = fit(small(tmp_path / "s", **sets, **{"data.stream": True}))
    memory = fit(small(tmp_path / "m", **sets))
    assert streamed.config.model.input_shape == (1, 8, 8) and streamed.config.data.binarize == "dynamic"
    assert len(streamed.history) == 2 and streamed.history[-1]["val_loss"] < streamed.history[0]["val_loss"]
    # a stream holds out the file's tail, memory a shuffled sample: similar data, similar losses
    assert abs(streamed.test["loss"] - memory.test["loss"]) < 0.1 * memory.test["loss"]


def test_bf16_autocast_runs_the_networks_in_bf16_and_the_densities_in_fp32(tmp_path):
    fp32 = fit(small(tmp_path / "fp32"))
    bf16 = fit(small(tmp_path / "bf16", **{"train.precision": "bf16"}))
    model = bf16.model
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    x = torch.rand(5, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoder(x).dtype == torch.bfloat16
        q = model.encode(x)
        lik = model.decode(q.mean)
        assert q.mu.dtype == lik.params.dtype == torch.float32
    for a, b in zip(fp32.history, bf16.history):  # bf16 rounding, not another model
        assert abs(a["train_loss"] - b["train_loss"]) < 0.02 * a["train_loss"]
    assert bf16.history[-1]["train_loss"] < bf16.history[0]["train_loss"]


@pytest.mark.skipif(not any(map(shutil.which, ("cc", "gcc", "clang"))), reason="torch.compile on CPU needs a C compiler")
def test_compiled_networks_train_like_eager_and_keep_the_checkpoint_keys(tmp_path):
    eager = fit(small(tmp_path / "eager", **{"train.epochs": 1}))
    compiled = fit(small(tmp_path / "compiled", **{"train.epochs": 1, "train.compile": True}))
    assert weights(tmp_path / "eager").keys() == weights(tmp_path / "compiled").keys()  # no _orig_mod. prefixes
    assert abs(eager.history[0]["train_loss"] - compiled.history[0]["train_loss"]) < 1e-3
    loaded = vaekit.load(tmp_path / "compiled")  # the compiled run's checkpoint loads into a plain model, weights intact
    assert all(torch.equal(v, compiled.model.state_dict()[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_denormals_on_every_cpu_thread(tmp_path, flush):
    # a fresh process, as under the CLI: the intra-op threads are created inside fit and take its mode
    script = f"""
import json, sys, torch, vaekit
vaekit.fit(vaekit.Config(out=sys.argv[1]).override(["train.epochs=1", "train.tensorboard=false", "model.latent_dim=2",
                                                    "model.hidden=[16]", "train.flush_denormal={json.dumps(flush)}"]))
y = torch.full((4_000_000,), 1e-39) * 1.5  # a parallel op: every intra-op thread takes a share
print(torch.get_num_threads(), (y == 0).sum().item())
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "r")], capture_output=True, text=True, check=True)
    threads, zeros = map(int, done.stdout.split()[-2:])
    assert zeros == (4_000_000 if flush else 0), f"{threads} threads"

"""Training recipes: learning-rate schedules against their formulas, resume continuing them exactly, the time
budget, the weight average against one computed by hand, the output bias from the data's mean, and model
choice on a validation bound."""
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaekit import Config, VaekitError, fit
from vaekit.averaging import decay_at
from vaekit.cli import main
from vaekit.evaluation import validation_bound
from vaekit.schedules import BURDA_STAGES, Schedule

SPE = 10  # steps per epoch in the pure schedule checks


def config(out, **sets) -> Config:
    base = {"train.epochs": 3, "train.batch_size": 64, "train.tensorboard": False}
    return Config(out=str(out)).override([f"{k}={json.dumps(v)}" for k, v in {**base, **sets}.items()])


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind, extra, expected", [
    ("constant", {}, lambda t, T: 1e-3),
    ("step", {"milestones": (2, 5), "gamma": 0.5}, lambda t, T: 1e-3 * 0.5 ** ((t >= 2 * SPE) + (t >= 5 * SPE))),
    ("exponential", {"gamma": 0.9}, lambda t, T: 1e-3 * 0.9 ** (t / SPE)),
    ("cosine", {"lr_min": 1e-5}, lambda t, T: 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / T)) / 2),
])
def test_each_schedule_gives_its_formula(kind, extra, expected):
    total = 80
    s = Schedule(kind, 1e-3, SPE, total, **extra)
    for t in (0, 1, 19, 20, 21, 49, 50, 63, 79):
        assert s(t) == pytest.approx(expected(t, total), rel=1e-12), t


def test_burdas_schedule_is_the_papers_stages_scaled_to_the_run():
    epochs = sum(BURDA_STAGES)  # 3,280: the paper's own length gives its own stages
    s = Schedule("burda", 1e-3, 1, epochs)
    start = 0
    for i, length in enumerate(BURDA_STAGES):  # stage i: 3^i epochs at 1e-3 · 10^(-i/7)
        for t in (start, start + length - 1):
            assert s(t) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12), (i, t)
        start += length
    short = Schedule("burda", 1e-3, 1, 328)  # a tenth of the length, each stage a tenth as long: step 50 is epoch 500 of 3,280
    assert short(0) == 1e-3 and short(327) == pytest.approx(1e-3 * 10 ** -1) and short(50) == pytest.approx(1e-3 * 10 ** (-6 / 7))


def test_a_warm_up_comes_in_front_of_the_schedule():
    s = Schedule("cosine", 1e-3, SPE, 110, warmup_steps=10)
    assert [s(t) for t in range(3)] == pytest.approx([1e-4, 2e-4, 3e-4])
    assert s(9) == pytest.approx(1e-3) and s(10) == pytest.approx(1e-3)  # then the cosine over the 100 steps left
    assert s(60) == pytest.approx(5e-4) and s(109) == pytest.approx(1e-3 * (1 + math.cos(math.pi * 99 / 100)) / 2)


def test_the_run_records_the_rate_of_its_last_step_and_the_optimizer_has_adams_settings(tmp_path):
    seen = {}
    run = fit(config(tmp_path / "run", **{"train.schedule": "cosine", "train.lr_min": 1e-4, "train.eps": 1e-4,
                                          "train.betas": [0.8, 0.99]}), progress=False,
              hooks={"on_step": lambda t: seen.update(lr=t.step.opt.param_groups[0]["lr"], group=t.step.opt.param_groups[0])})
    steps = run.history[-1]["step"]
    per_epoch = steps // 3
    for h in run.history:
        t = h["step"] - 1
        assert h["lr"] == pytest.approx(1e-4 + (1e-3 - 1e-4) * (1 + math.cos(math.pi * t / steps)) / 2)
    assert seen["lr"] == run.history[-1]["lr"] and per_epoch * 3 == steps
    assert seen["group"]["eps"] == 1e-4 and tuple(seen["group"]["betas"]) == (0.8, 0.99)


def test_resume_continues_the_schedule_and_the_average_exactly(tmp_path):
    sets = {"train.schedule": "cosine", "train.warmup_steps": 5, "train.ema": True, "train.ema_decay": 0.9,
            "train.checkpoint_steps": 7}
    whole = fit(config(tmp_path / "whole", **sets), progress=False)
    with pytest.raises(KeyboardInterrupt):  # interrupted mid-epoch, two steps after the checkpoint at step 14
        fit(config(tmp_path / "cut", **sets), progress=False, hooks={"on_step": _interrupt_at(16)})
    assert torch.load(tmp_path / "cut" / "trainer.pt", weights_only=True)["step"] == 14
    resumed = fit(config(tmp_path / "cut", **sets), resume=True, progress=False)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in whole.history]
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in whole.history]


def _interrupt_at(step):
    def hook(trainer):
        if trainer.state.step == step:
            raise KeyboardInterrupt
    return hook


def test_the_weight_average_is_the_one_computed_by_hand(tmp_path):
    weights = []
    run = fit(config(tmp_path / "run", **{"train.ema": True, "train.ema_decay": 0.95, "train.epochs": 2}), progress=False,
              hooks={"on_step": lambda t: weights.append({k: v.clone() for k, v in t.model.state_dict().items()})})
    average = {k: v.double() for k, v in _initial(tmp_path / "run").items()}
    for t, w in enumerate(weights, start=1):  # a_t = d_t a_{t-1} + (1 - d_t) w_t, d_t = min(decay, (1 + t) / (10 + t))
        d = min(0.95, (1 + t) / (10 + t))
        average = {k: d * average[k] + (1 - d) * w[k].double() for k in average}
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert saved.keys() == average.keys()
    for k in saved:
        assert torch.allclose(saved[k].double(), average[k], atol=1e-6), k
        assert not torch.allclose(saved[k], weights[-1][k])  # the saved model is the average, not the last weights
    raw = torch.load(tmp_path / "run" / "trainer.pt", weights_only=True)["weights"]
    assert all(torch.equal(raw[k], weights[-1][k]) for k in raw)  # the raw weights are kept beside it, for resuming
    assert all(torch.equal(run.model.state_dict()[k], saved[k]) for k in saved)  # and fit returns the average
    assert decay_at(0.95, 1) == 2 / 11 and decay_at(0.95, 1000) == 0.95


def _initial(run):
    """The weights the run started from: its seed builds the same initialization."""
    from vaekit.checkpoint import read_config
    from vaekit.models import build

    config = read_config(run)
    torch.manual_seed(config.train.seed)
    return build(config.model).state_dict()


@pytest.mark.parametrize("likelihood, expected", [
    ("bernoulli", lambda m: np.log(np.clip(m, 1e-4, 1 - 1e-4)) - np.log1p(-np.clip(m, 1e-4, 1 - 1e-4))),
    ("gaussian", lambda m: m),
])
def test_the_output_bias_starts_at_the_data_mean(tmp_path, likelihood, expected):
    rng = np.random.default_rng(0)
    x = (rng.random((300, 12)) * np.linspace(0, 1, 12)).astype(np.float32)  # column 0 all zeros: logit clipped
    np.save(tmp_path / "x.npy", x)
    seen = {}
    run = fit(config(tmp_path / "run", **{"data.name": str(tmp_path / "x.npy"), "data.binarize": "none", "model.likelihood": likelihood,
                                          "model.init_output_bias": True, "train.epochs": 1}),
              progress=False, hooks={"on_step": lambda t: seen.setdefault("bias", t.model.decoder.net[-1].bias.detach().clone())})
    mean = run.data.train.x.double().mean(0).numpy()
    # seen after the first step, which moves each bias by about lr (Adam's first step) from where it started
    assert np.allclose(seen["bias"].numpy(), expected(mean), atol=1.5e-3)
    assert not np.allclose(expected(mean), 0, atol=0.1)


def test_a_decoder_that_cannot_say_its_output_bias_is_one_line(tmp_path):
    from torch import nn
    import vaekit

    enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    dec = nn.Sequential(nn.Linear(4, 64), nn.Unflatten(1, (1, 1, 8, 8)))
    model = vaekit.VAE(enc, dec, likelihood="bernoulli", latent_dim=4)
    with pytest.raises(VaekitError, match="init_output_bias: the decoder Sequential has no set_output_bias"):
        model.init_output_bias(torch.full((1, 8, 8), 0.5), torch.full((1, 8, 8), 0.25))


def test_model_choice_on_the_validation_iwae_bound_keeps_the_best_epoch(tmp_path):
    run = fit(config(tmp_path / "run", **{"train.select_on": "iwae", "train.select_k": 4, "train.epochs": 4, "train.lr": 0.03}),
              progress=False)
    bounds = [h["val_iwae"] for h in run.history]
    again = validation_bound(run.model, run.data.val, 4)  # the same draws: the kept model's own figure
    assert again == pytest.approx(max(bounds), abs=1e-9)


def test_the_time_budget_ends_within_five_percent_of_it(tmp_path, capsys):
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "run"), "--time-budget", "3s", "--schedule", "cosine",
                 "--set", "train.tensorboard=false"])
    assert code == 0
    state = torch.load(tmp_path / "run" / "trainer.pt", weights_only=True)
    history = metrics(tmp_path / "run")
    # it ends at the epoch boundary nearest the budget; only an epoch that itself took more than 5 % (a stall of
    # a loaded machine) may carry it further
    assert abs(state["trained_seconds"] - 3) <= max(0.15, history[-1]["seconds"]), state["trained_seconds"]
    assert len(history) == state["planned_epochs"] == state["epoch"]
    assert "vaekit: time budget 3 s at" in capsys.readouterr().err
    lrs = [h["lr"] for h in history]
    assert lrs[-1] < 0.05 * lrs[0]  # the cosine was stretched over the budget: it ends near its floor


@pytest.mark.parametrize("sets, message", [
    (["train.betas=[0.9]"], "train.betas: expected two numbers in [0, 1)"),
    (["train.time_budget=\"ten minutes\""], "train.time_budget='ten minutes': expected a duration such as 600, 90s, 10m or 1.5h"),
    (["train.ema_decay=1"], "train.ema_decay: expected a number below 1"),
    (["train.schedule=\"linear\""], "train.schedule: expected one of"),
    (["train.lr_min=0.1"], "train.lr_min=0.1: the cosine schedule's floor must not exceed train.lr=0.001"),
])
def test_bad_recipe_settings_are_one_line(sets, message):
    with pytest.raises(VaekitError, match=None) as e:
        Config().override(sets)
    assert message in str(e.value)

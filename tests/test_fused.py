"""The hand-derived training step of the MLP Bernoulli VAE against autograd on the same model, batch and ε."""
import json
from dataclasses import replace

import pytest
import torch

from vaekit import Config, fit
from vaekit.config import ModelConfig
from vaekit.fused import FusedStep, applies
from vaekit.models import build


def model(**kw):
    torch.manual_seed(0)
    return build(replace(ModelConfig(), **{"input_shape": (1, 28, 28), "likelihood": "bernoulli", "latent_dim": 20, **kw}))


def autograd_step(m, x, kl_weight, seed, weight):
    out = m.loss(x, kl_weight=kl_weight, generator=torch.Generator().manual_seed(seed))
    m.zero_grad(set_to_none=True)
    (out.loss * weight).backward()
    return torch.stack([out.loss, out.recon, out.kl]).detach(), {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("activation,hidden,beta", [("relu", (400,), 1.0), ("tanh", (64, 32), 2.0)])
def test_gradients_and_terms_equal_autograd(activation, hidden, beta):
    m = model(activation=activation, hidden=hidden, beta=beta)
    x = (torch.rand(37, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    x[0] = 0.5  # [0, 1] intensities as well as binary pixels
    terms, grads = autograd_step(m, x, 0.3, 5, 1.7)
    fused = FusedStep(m)
    for _ in range(2):  # the second call reuses the step's buffers and must overwrite every gradient
        got = fused(x, 0.3, torch.Generator().manual_seed(5), 1.7)  # the same ε as VAE.loss draws
        assert torch.allclose(got, terms, rtol=1e-5)
        for n, p in m.named_parameters():
            assert torch.allclose(p.grad, grads[n], rtol=1e-4, atol=1e-6), n


def test_bf16_products_are_as_close_to_float32_as_autocasts_are():
    m = model(activation="tanh", hidden=(200, 200), latent_dim=50)
    x = (torch.rand(100, 1, 28, 28, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    terms, grads = autograd_step(m, x, 1.0, 3, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto_terms, auto_grads = autograd_step(m, x, 1.0, 3, 1.0)
    fused = FusedStep(m, torch.bfloat16)
    for _ in range(2):
        got = fused(x, 1.0, torch.Generator().manual_seed(3), 1.0)
        flat = lambda g: torch.cat([g[n].flatten() for n, _ in m.named_parameters()])
        ours = flat({n: p.grad for n, p in m.named_parameters()})
        error, auto_error = (ours - flat(grads)).norm() / flat(grads).norm(), (flat(auto_grads) - flat(grads)).norm() / flat(grads).norm()
        assert auto_error / 4 < error < 2 * auto_error  # bf16 rounding (not float32's), no worse than autocast's
        assert torch.allclose(got, terms, rtol=2e-3) and torch.allclose(got, auto_terms, rtol=2e-3)
        assert all(p.grad.dtype == torch.float32 for p in m.parameters())


def test_logits_beyond_exp_overflow_fall_back_to_softplus():
    m = model()
    with torch.no_grad():
        m.decoder.net[-1].bias[:10] = 120.0  # e^120 overflows float32
    x = (torch.rand(8, 1, 28, 28) < 0.3).float()
    terms, grads = autograd_step(m, x, 1.0, 0, 1.0)
    got = FusedStep(m)(x, 1.0, torch.Generator().manual_seed(0), 1.0)
    assert torch.isfinite(got).all() and torch.allclose(got, terms, rtol=1e-5)
    assert all(torch.allclose(p.grad, grads[n], rtol=1e-4, atol=1e-6) for n, p in m.named_parameters())


def test_only_the_derived_model_takes_the_step():
    assert applies(model()) and applies(model(activation="tanh", hidden=(500,)))
    for kw in ({"likelihood": "gaussian"}, {"objective": "iwae"}, {"mc_samples": 2}, {"kl_estimator": "sampled"},
               {"estimator": "score-function"}, {"activation": "softplus"}, {"kind": "ae"}, {"kind": "dae"},
               {"kind": "hvae", "stochastic_layers": (10,)}, {"net": "conv"}):
        kw = {"likelihood": "bernoulli", **kw}
        m = build(replace(ModelConfig(), input_shape=(1, 28, 28), latent_dim=20, **kw))
        assert not applies(m), kw
        with pytest.raises(ValueError):
            FusedStep(m)


def test_training_by_hand_follows_training_through_autograd(tmp_path, monkeypatch):
    calls = []
    step = FusedStep.__call__
    monkeypatch.setattr(FusedStep, "__call__", lambda self, *a: calls.append(1) or step(self, *a))

    def run(name, fused):
        sets = {"data.name": "digits", "train.epochs": 3, "train.batch_size": 64, "train.kl_warmup_steps": 30,
                "train.tensorboard": False, "model.latent_dim": 4, "train.fused": fused}
        return fit(Config(out=str(tmp_path / name)).override([f"{k}={json.dumps(v)}" for k, v in sets.items()]))

    by_hand = run("fused", True)
    assert len(calls) == by_hand.history[-1]["step"]  # every step was taken by hand
    calls.clear()
    bf16 = fit(Config(out=str(tmp_path / "bf16")).override(['data.name="digits"', "train.epochs=1", "model.latent_dim=4",
                                                           'train.precision="bf16"', "train.tensorboard=false"]))
    assert len(calls) == bf16.history[-1]["step"]  # bf16 goes through the hand-derived step too
    calls.clear()
    autograd = run("autograd", False)
    assert not calls
    for a, b in zip(by_hand.history, autograd.history):
        for key in ("train_loss", "train_kl", "val_loss"):
            assert abs(a[key] - b[key]) <= 1e-4 * abs(b[key]) + 1e-5, (key, a[key], b[key])
    assert by_hand.history[-1]["train_loss"] < by_hand.history[0]["train_loss"] - 1

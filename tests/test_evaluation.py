import importlib
import math

import pytest
import torch

import vaekit
from vaekit import VaekitError, build, evaluate, log_likelihood
from vaekit.config import ModelConfig
from vaekit.evaluation import naive_log_likelihood
from tests.test_models import linear_gaussian, set_exact_posterior

ev = importlib.import_module("vaekit.evaluation")  # the module beside the function vaekit.evaluate


def imperfect(D=6, k=3, sigma=0.5, shift=0.3, n=200):
    """A linear-Gaussian VAE whose encoder is the exact posterior, shifted and twice as wide: a fair proposal, a loose ELBO."""
    torch.manual_seed(0)
    model, W, b, marginal = linear_gaussian(D, k, sigma)
    model.mc_samples = 1
    set_exact_posterior(model, W, b, sigma)
    with torch.no_grad():
        model.encoder.net[0].bias[:k] += shift
        model.encoder.net[0].bias[k:] += math.log(2.0)
    x = marginal.sample((n,))
    return model, x, marginal.log_prob(x)


@pytest.fixture(scope="module")
def lg():
    return imperfect()


def test_importance_sampling_recovers_the_exact_log_likelihood(lg):
    model, x, exact = lg
    est = log_likelihood(model, x, k=5000, generator=torch.Generator().manual_seed(0))
    se = est.std() / math.sqrt(len(est))
    assert abs(est.mean() - exact.mean()) < 3 * se
    assert (est - exact).abs().max() < 0.1  # per example, too
    elbo = -model.loss(x, generator=torch.Generator().manual_seed(0)).loss
    assert elbo < est.mean() - 0.2  # the encoder is off, so the bound is loose


@torch.no_grad()
def test_k1_estimate_has_the_elbo_as_its_mean(lg):
    model, x, _ = lg
    g = torch.Generator().manual_seed(1)
    k1 = torch.stack([log_likelihood(model, x, k=1, generator=g).mean() for _ in range(400)])
    elbo = torch.stack([-model.loss(x, generator=g).loss for _ in range(400)])
    se = math.sqrt(k1.var() / len(k1) + elbo.var() / len(elbo))
    assert abs(k1.mean() - elbo.mean()) < 3 * se


def test_estimate_does_not_decrease_with_k():
    model, x, exact = imperfect(shift=0.8, n=2000)
    means = [log_likelihood(model, x, k=k, generator=torch.Generator().manual_seed(0)).mean().item() for k in (1, 10, 100, 1000)]
    assert means == sorted(means) and means[-1] <= exact.mean() + 0.05


def test_chunked_log_sum_exp_equals_the_whole():
    log_w = torch.randn(300, 10, dtype=torch.float64) * 30 - 500  # far below exp's range: needs the stable form
    chunks = log_w.split(7)
    assert torch.allclose(ev._log_mean_exp_over_samples(chunks, 300), torch.logsumexp(log_w, 0) - math.log(300))


def test_rows_per_chunk_bounds_the_samples_in_one_pass(monkeypatch):
    monkeypatch.setattr(ev, "ROWS_PER_CHUNK", 70)
    assert list(ev._chunks(300, 10)) == [7] * 42 + [6]
    assert list(ev._chunks(5, 1000)) == [1] * 5


def test_naive_estimator_falls_short_in_20_dimensions():
    model, x, exact = imperfect(D=40, k=20, sigma=0.1, shift=0.0)
    g = torch.Generator().manual_seed(2)
    naive, iwae = naive_log_likelihood(model, x, 5000, g), log_likelihood(model, x, 5000, g)
    assert (iwae.mean() - exact.mean()).abs() < 0.5
    assert naive.mean() < exact.mean() - 20


def test_active_units_count_units_forced_inactive():
    ds = vaekit.load_dataset(vaekit.DataConfig())
    model = build(ModelConfig(latent_dim=6, hidden=(32,), likelihood="bernoulli", input_shape=(1, 8, 8)))
    with torch.no_grad():
        last = model.encoder.net[-1]
        last.weight.mul_(5)
        last.weight[:2] = 0  # the means of units 0 and 1 ignore x
    r = evaluate(model, ds, k=10, baselines=False)
    assert r["active_units"] == 4 and r["mean_variance_per_unit"][0] == 0
    assert "warning" not in r
    with torch.no_grad():
        last.weight[:5] = 0
    r = evaluate(model, ds, k=10, baselines=False)
    assert r["active_units"] == 1 and "posterior collapse: only 1 of 6" in r["warning"]


def test_report_terms_are_consistent(tmp_path):
    run = vaekit.fit(vaekit.Config(out=str(tmp_path / "r")).override(["train.epochs=5", "train.tensorboard=false", "model.latent_dim=4"]))
    r = evaluate(run.model, k=200)
    assert r["elbo"] == pytest.approx(-(r["recon"] + r["kl"]))
    assert r["log_px"] > r["elbo"] > r["log_px_naive"] - 50
    assert r["elbo_bits_per_dim"] == pytest.approx(-r["elbo"] / (64 * math.log(2)))
    assert len(r["kl_per_unit"]) == 4 and sum(r["kl_per_unit"]) == pytest.approx(r["kl"], rel=0.05)
    b = r["baselines"]
    assert 0 < b["pca_mse_per_pixel"] < 0.2 and 0.5 < b["probe_accuracy_encoder"] <= 1 and 0.5 < b["probe_accuracy_pca"] <= 1


def test_autoencoder_reports_reconstruction_only(tmp_path):
    run = vaekit.fit(vaekit.Config(out=str(tmp_path / "ae")).override(['model.kind="ae"', "train.epochs=2", "train.tensorboard=false"]))
    r = evaluate(run.model, k=10, baselines=False)
    assert "log_px" not in r and "elbo" not in r and r["recon"] > 0 and r["mse_per_pixel"] > 0


def test_bad_k_and_mismatched_data(tmp_path, shared_data):
    run = vaekit.fit(vaekit.Config(out=str(tmp_path / "r")).override(["train.epochs=1", "train.tensorboard=false"]))
    with pytest.raises(VaekitError, match="k=0: expected a whole number from 1 to"):
        evaluate(run.model, k=0)
    mnist = vaekit.load_dataset(vaekit.DataConfig(name="mnist", data_dir=str(shared_data), download=False))
    with pytest.raises(VaekitError, match=r"rows of shape \(1, 28, 28\), but the model takes \(1, 8, 8\)"):
        evaluate(run.model, mnist)

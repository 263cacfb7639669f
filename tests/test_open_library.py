"""vaekit as a library: your own networks, likelihoods, priors, objectives and data through the one trainer."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributions as td
from torch import nn

import vaekit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples import custom_model  # noqa: E402  (the example registers its parts on import)
from tests import registered_parts  # noqa: E402,F401


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _digits():
    return custom_model.digits()


def _mlp_vae(k=4, likelihood="bernoulli", **kw):
    enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2 * k))
    dec = nn.Sequential(nn.Linear(k, 32), nn.ReLU(), nn.Linear(32, 64), nn.Unflatten(1, (1, 8, 8)))
    return vaekit.VAE(enc, dec, likelihood=likelihood, latent_dim=k, **kw)


@pytest.mark.parametrize("logit", [-30.0, -4.0, -0.3, -1e-3, 0.0, 2e-3, 0.7, 5.0, 25.0])
def test_the_continuous_bernoulli_integrates_to_one(logit):
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    lik = custom_model.ContinuousBernoulli(torch.full((len(x), 1), logit, dtype=torch.float64), event_ndim=1)
    density = lik.log_prob(x[:, None]).exp()
    assert abs(torch.trapezoid(density, x).item() - 1) < 1e-6
    mean = torch.trapezoid(density * x, x).item()
    assert abs(lik.mean[0, 0].item() - mean) < 1e-5
    s = custom_model.ContinuousBernoulli(torch.full((100_000, 1), logit), 1).sample(torch.Generator().manual_seed(0))
    assert abs(s.mean().item() - mean) < 0.005 and (s >= 0).all() and (s <= 1).all()


def test_the_mixture_prior_is_a_normalized_density():
    prior = custom_model.MixturePrior(1, components=3)
    z = torch.linspace(-15, 15, 30_001)[:, None]
    assert abs(torch.trapezoid(prior.log_prob(z).exp(), z[:, 0]).item() - 1) < 1e-4
    draws = prior.sample(60_000, torch.Generator().manual_seed(0))
    assert abs(draws.mean().item() - prior.means.mean().item()) < 0.03


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "custom"
    return out, custom_model.main(str(out), epochs=15)


def test_the_example_trains_evaluates_and_reloads_its_own_parts(example_run):
    out, result = example_run
    cfg = json.loads((out / "config.json").read_text())["model"]
    assert (cfg["net"], cfg["likelihood"], cfg["prior"]) == ("small-conv", "continuous-bernoulli", "unit-mixture")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 20  # it learned
    assert result["n"] == 180 and math.isfinite(result["log_px"])
    assert result["log_px"] > result["elbo"]  # importance sampling tightens the bound
    model = vaekit.load(out)  # by the registered names alone
    assert isinstance(model.prior, custom_model.MixturePrior) and model.likelihood is custom_model.ContinuousBernoulli
    x = _digits()[2][:16]
    fitted = vaekit.load(out, model=vaekit.VAE(custom_model.ConvEncoder((1, 8, 8), 8), custom_model.ConvDecoder((1, 8, 8), 8),
                                                likelihood="continuous-bernoulli", latent_dim=8, prior=custom_model.MixturePrior(8)))
    assert torch.equal(model.decode(model.encode(x).mean).mean, fitted.decode(fitted.encode(x).mean).mean)
    assert torch.equal(model.prior.means, fitted.prior.means)  # the learned prior was saved with the weights


def test_every_command_runs_on_the_example_run_when_told_to_import_it(example_run, tmp_path):
    out, _ = example_run
    r = _cli("eval", str(out), "--k", "50", "--no-progress")
    assert r.returncode == 2 and "--import" in r.stderr and "Traceback" not in r.stderr  # the run never imports code itself
    for args in (("eval", str(out), "--k", "50", "--no-progress"), ("sample", str(out), "--out", str(tmp_path)),
                 ("report", str(out), "--out", str(tmp_path))):
        r = _cli("--import", "examples.custom_model", *args)
        assert r.returncode == 0, r.stderr
    assert "log p(x)" in _cli("--import", "examples.custom_model", "eval", str(out), "--k", "50", "--no-progress").stdout
    assert (tmp_path / "samples.png").stat().st_size > 1000 and (tmp_path / "report.html").stat().st_size > 10_000
    assert json.loads((out / "eval.json").read_text())["n"] == 180


@pytest.mark.parametrize("form", ["tensor", "array", "pair", "dataset"])
def test_fit_takes_tensors_arrays_pairs_and_datasets(form):
    x_train, x_val, _ = _digits()
    y = torch.arange(len(x_train)) % 10
    data = {"tensor": x_train, "array": x_train.numpy(), "pair": (x_train, y),
            "dataset": torch.utils.data.TensorDataset(x_train, y)}[form]
    torch.manual_seed(0)
    model = _mlp_vae()
    run = vaekit.fit(model, data, val=x_val, epochs=3, progress=False)
    assert run.dir is None and len(run.history) == 3
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    assert len(run.data.train) == len(x_train) and len(run.data.val) == len(x_val)


def test_fit_without_val_holds_out_a_tenth_and_refuses_a_wrong_shape():
    x_train, _, _ = _digits()
    run = vaekit.fit(_mlp_vae(), x_train, epochs=1, progress=False)
    assert len(run.data.val) == round(0.1 * len(x_train)) and len(run.data.train) == len(x_train) - len(run.data.val)
    with pytest.raises(vaekit.VaekitError, match=r"rows of shape \(64,\), but the model takes \(1, 8, 8\)"):
        vaekit.fit(run.model, x_train.flatten(1), epochs=1, progress=False)
    with pytest.raises(vaekit.VaekitError, match="unknown config key 'train.epoch'"):
        vaekit.fit(_mlp_vae(), x_train, epoch=1)


def test_evaluate_covers_exactly_the_rows_given():
    x_train, x_val, x_test = _digits()
    model = vaekit.fit(_mlp_vae(), x_train, val=x_val, epochs=5, progress=False).model
    r = vaekit.evaluate(model, x_test[:37], k=100, baselines=False)
    assert r["n"] == 37
    g = torch.Generator().manual_seed(1)
    direct = torch.cat([vaekit.log_likelihood(model, x_test[i:i + 10], 100, g) for i in range(0, 37, 10)]).double().mean()
    assert abs(r["log_px"] - direct.item()) < 0.5  # the same estimator on the same 37 rows (other draws)
    r7 = vaekit.evaluate(model, x_test[:7].numpy(), k=100)
    assert r7["n"] == 7 and r7["baselines"]["fit_on"] == "evaluated rows"


def test_load_into_a_module_you_built_gives_identical_outputs(tmp_path):
    x_train, x_val, x_test = _digits()
    torch.manual_seed(0)
    run = vaekit.fit(_mlp_vae(), x_train, val=x_val, test=x_test, epochs=2, out=tmp_path / "mine", progress=False)
    cfg = json.loads((tmp_path / "mine" / "config.json").read_text())
    assert cfg["model"]["net"] == "custom" and cfg["data"]["name"] == "data.npz"  # the run directory's own copy
    with pytest.raises(vaekit.VaekitError, match=r"built by hand .*vaekit.load\(dir, model=...\)"):
        vaekit.load(tmp_path / "mine")
    again = vaekit.load(tmp_path / "mine", model=_mlp_vae())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(again.sample(5, g1), run.model.eval().sample(5, g2))
    a = again.loss(x_test, generator=torch.Generator().manual_seed(4)).loss
    assert torch.equal(a, run.model.loss(x_test, generator=torch.Generator().manual_seed(4)).loss)
    assert isinstance(again(x_test), vaekit.LossOutput)  # forward is the objective's LossOutput
    r = vaekit.evaluate(again, k=50, baselines=False)  # the run's own test rows, from data.npz
    assert r["n"] == len(x_test)


def test_a_registered_objective_trains_through_fit_and_the_cli(tmp_path):
    x_train, x_val, _ = _digits()
    torch.manual_seed(0)
    run = vaekit.fit(_mlp_vae(8), x_train, val=x_val, epochs=10, objective="free-bits", progress=False)
    kl = run.model.encode(x_val).kl_per_unit().mean(0)
    assert type(run.model.objective).__name__ == "FreeBits"
    assert (kl > 0.3).sum() >= 6  # free bits keep most units in use, where the ELBO lets some collapse to 0
    r = _cli("--import", "tests.registered_parts", "train", "--out", str(tmp_path / "fb"), "--epochs", "2", "--latent-dim", "4",
             "--objective", "free-bits", "--no-progress", "--set", "train.tensorboard=false")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "fb" / "config.json").read_text())["model"]["objective"] == "free-bits"
    r = _cli("train", "--out", str(tmp_path / "fb2"), "--objective", "free-bits")
    assert r.returncode == 2 and "model.objective: expected one of" in r.stderr and "got 'free-bits'" in r.stderr


@pytest.mark.parametrize("args, key", [
    (("--model", "ae", "--beta", "2"), "model.beta=2.0"),
    (("--k", "10",), "model.iwae_k=10"),
    (("--model", "hvae", "--set", "model.stochastic_layers=[8]", "--estimator", "score-function"), "model.estimator"),
    (("--objective", "iwae", "--estimator", "score-function"), "model.estimator"),
    (("--net", "conv", "--hidden", "100"), "model.hidden=[100]"),
    (("--model", "vae", "--set", "model.noise=0.5"), "model.noise=0.5"),
])
def test_a_key_that_does_not_apply_is_a_one_line_error(tmp_path, args, key):
    r = _cli("train", "--out", str(tmp_path / "r"), "--epochs", "1", *args)
    assert r.returncode == 2, r.stderr
    assert key in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_configs_validate_where_they_are_written():
    with pytest.raises(vaekit.VaekitError, match="train.optimizer: expected one of 'adam', 'adagrad', 'sgd', got 'adamw'"):
        vaekit.TrainConfig(optimizer="adamw")
    with pytest.raises(vaekit.VaekitError, match="model.likelihood: expected one of 'bernoulli', .* got 'poisson'"):
        vaekit.ModelConfig(likelihood="poisson")
    assert vaekit.ModelConfig(hidden=[8, 8]).hidden == (8, 8)


def test_posteriors_behave_as_torch_distributions_do():
    x = _digits()[0][:6]
    q = _mlp_vae(3).encode(x)
    assert isinstance(q, td.Distribution) and q.rsample((5,)).shape == (5, 6, 3) and q.sample().shape == (6, 3)
    exact = td.kl_divergence(td.Normal(q.mean, q.stddev), td.Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(td.kl_divergence(q, vaekit.distributions.StandardNormal(3)), exact, atol=1e-6)
    other = vaekit.distributions.DiagonalGaussian(torch.ones(6, 3), torch.zeros(6, 3))
    exact = td.kl_divergence(td.Normal(q.mean, q.stddev), td.Normal(1.0, 1.0)).sum(-1)
    assert torch.allclose(td.kl_divergence(q, other), exact, atol=1e-6)
    assert torch.allclose(q.entropy(), td.Normal(q.mean, q.stddev).entropy().sum(-1), atol=1e-6)


def test_wrong_shapes_and_dtypes_get_one_line():
    model = _mlp_vae(3, input_shape=(1, 8, 8))
    with pytest.raises(vaekit.VaekitError, match=r"encode: x has shape \(2, 64\), dtype torch.float32; this model takes float tensors of shape \(batch, 1, 8, 8\)"):
        model.encode(torch.zeros(2, 64))
    with pytest.raises(vaekit.VaekitError, match=r"dtype torch.int64"):
        model.encode(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(vaekit.VaekitError, match=r"decode: z has shape \(2, 4\).*\(batch, 3\)"):
        model.decode(torch.zeros(2, 4))
    bad = vaekit.VAE(nn.Flatten(), nn.Linear(3, 10), latent_dim=3, input_shape=(1, 8, 8))
    with pytest.raises(vaekit.VaekitError, match="the encoder gives 64 numbers per example; a VAE with latent_dim=3 needs 6"):
        bad.encode(torch.zeros(2, 1, 8, 8))
    with pytest.raises(vaekit.VaekitError, match=r"the decoder gives outputs of shape \(10,\) per example"):
        bad.decode(torch.zeros(2, 3))


def test_a_presplit_npz_trains_and_evaluates_every_row_of_each_split(tmp_path):
    x_train, x_val, x_test = (a.numpy() for a in _digits())
    np.savez(tmp_path / "split.npz", train=x_train, valid=x_val[:50], test=x_test[:33])
    r = _cli("train", "--data", str(tmp_path / "split.npz"), "--out", str(tmp_path / "r"), "--epochs", "2", "--no-progress",
             "--set", "train.tensorboard=false")
    assert r.returncode == 0, r.stderr
    model = vaekit.load(tmp_path / "r")
    from vaekit.runs import open_data

    data = open_data(model.config)
    assert (len(data.train), len(data.val), len(data.test)) == (len(x_train), 50, 33)
    assert np.array_equal(data.test.x.numpy(), x_test[:33])  # the rows as stored, before binarization


def test_presplit_files_train_and_eval_data_covers_every_row_of_a_file(tmp_path):
    x_train, x_val, x_test = (a.numpy() for a in _digits())
    for name, a in (("train", x_train), ("valid", x_val[:40]), ("test", x_test[:30])):
        np.save(tmp_path / f"{name}.npy", a)
    r = _cli("train", "--data", str(tmp_path / "train.npy"), "--val-data", str(tmp_path / "valid.npy"), "--test-data",
             str(tmp_path / "test.npy"), "--out", str(tmp_path / "r"), "--epochs", "2", "--no-progress",
             "--set", "train.tensorboard=false", "--set", "data.val_size=10000")
    assert r.returncode == 0, r.stderr
    from vaekit.runs import open_data

    data = open_data(vaekit.load(tmp_path / "r").config)
    assert (len(data.train), len(data.val), len(data.test)) == (len(x_train), 40, 30)  # nothing held out of train.npy
    np.save(tmp_path / "other.npy", np.concatenate([x_test, x_val])[:301])
    r = _cli("eval", str(tmp_path / "r"), "--data", str(tmp_path / "other.npy"), "--k", "20", "--no-progress", "--no-baselines")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["n"] == 301  # every row of the file, not a re-split tenth


def test_the_readme_poisson_likelihood_works_by_its_name(tmp_path):
    """The README's example of a registered likelihood, as written there: trains, saves, reloads by name."""
    import re

    block = re.search(r'```python\n(@vaekit.register\("likelihood", "poisson"\).*?)```', (ROOT / "README.md").read_text(), re.S)
    namespace = {"vaekit": vaekit, "torch": torch}
    exec(block.group(1), namespace)
    counts = torch.poisson(torch.full((300, 6), 3.0), generator=torch.Generator().manual_seed(0))
    enc = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))
    dec = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 6))
    model = vaekit.VAE(enc, dec, likelihood="poisson", latent_dim=2)
    run = vaekit.fit(model, counts, epochs=150, lr=0.02, progress=False)
    rate = model.decode(torch.zeros(1, 2)).mean
    assert torch.allclose(rate, torch.full_like(rate, 3.0), atol=0.4)  # the rate of the data it saw
    assert run.history[-1]["val_loss"] < run.history[0]["val_loss"]
    assert model.decode(torch.zeros(5, 2)).sample(torch.Generator().manual_seed(1)).shape == (5, 6)

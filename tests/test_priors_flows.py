"""The learned priors (mixture of Gaussians, VampPrior) and the flow posteriors (planar, IAF): densities against
the formulas written out, log-determinants against autograd's Jacobian, the IWAE bound against an exact log p(x),
and the CLI and API round trip."""
import json
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

import vaekit
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.distributions import IAF, MixtureOfGaussians, PlanarFlow
from vaekit.distributions.posteriors import IAFStep, PlanarStep
from vaekit.evaluation import log_likelihood
from vaekit.models import build


def _explicit_mixture(z, mu, log_var, log_w):
    """log Σ_k w_k Π_d N(z_d; μ_kd, σ_kd²), one component at a time."""
    comps = torch.stack([td.Normal(m, torch.exp(0.5 * lv)).log_prob(z).sum(-1) for m, lv in zip(mu, log_var)], -1)
    return torch.logsumexp(comps + log_w, -1)


def test_the_vamp_prior_is_the_mixture_of_the_pseudo_inputs_posteriors():
    torch.manual_seed(0)
    model = build(ModelConfig(input_shape=(1, 5, 5), likelihood="bernoulli", latent_dim=3, hidden=(16,), prior="vamp",
                              prior_components=7))
    with torch.no_grad():
        model.prior.pseudo_inputs.uniform_(-0.5, 1.5)  # some outside [0, 1]: the hard tanh must clip them
    z = 2 * torch.randn(4, 6, 3)
    q = model.encode(model.prior.pseudo_inputs.detach().clamp(0, 1))  # the posteriors of the pseudo-inputs, by hand
    expected = _explicit_mixture(z, q.mu, q.log_var, torch.full((7,), -math.log(7)))
    assert torch.allclose(model.prior.log_prob(z), expected, atol=1e-4)
    # the prior is trained with the model: its pseudo-inputs get a gradient and are in the state dict
    model.loss(torch.rand(8, 1, 5, 5).bernoulli()).loss.backward()
    assert model.prior.pseudo_inputs.grad.abs().sum() > 0 and "prior.pseudo_inputs" in model.state_dict()


def test_the_mixture_prior_density_and_draws_match_the_mixture():
    torch.manual_seed(1)
    prior = MixtureOfGaussians(2, prior_components=3)
    with torch.no_grad():
        prior.log_vars.normal_(0, 0.5)
        prior.logits.normal_()
    z = torch.randn(50, 2) * 3
    expected = _explicit_mixture(z, prior.means, prior.log_vars, prior.logits.log_softmax(-1))
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-4)
    draws = prior.sample(40000, torch.Generator().manual_seed(0))
    w, mu, var = prior.logits.softmax(-1)[:, None], prior.means.detach(), prior.log_vars.exp().detach()
    mean = (w * mu).sum(0)
    second = (w * (var + mu ** 2)).sum(0)
    se = ((second - mean ** 2) / len(draws)).sqrt()
    assert ((draws.mean(0) - mean).abs() < 4 * se).all()
    assert torch.allclose(draws.var(0), second - mean ** 2, rtol=0.05)


@pytest.mark.parametrize("step_class", [PlanarStep, IAFStep])
def test_a_flow_steps_log_determinant_is_its_jacobians(step_class):
    torch.manual_seed(2)
    d = 4
    step = step_class(d)
    for p in step.parameters():
        nn.init.normal_(p, std=0.7)
    h = torch.randn(d)
    for _ in range(3):
        z = torch.randn(d)
        jac = torch.autograd.functional.jacobian(lambda v: step(v, h)[0], z)
        assert torch.allclose(step(z, h)[1], torch.linalg.slogdet(jac)[1], atol=1e-4)
        if step_class is IAFStep:  # autoregressive: output i depends on inputs before i only, and on itself
            assert torch.allclose(jac.triu(1), torch.zeros(d, d), atol=1e-7)


@pytest.mark.parametrize("flow", [PlanarFlow, IAF])
def test_a_flow_posteriors_density_is_the_base_density_minus_the_log_determinant(flow):
    torch.manual_seed(3)
    d = 3
    posterior = flow(d, flow_steps=3)
    out = torch.randn(3 * d)
    q = posterior(out)
    z = q.rsample((), torch.Generator().manual_seed(0))
    z0 = q.base.rsample((), torch.Generator().manual_seed(0))
    jac = torch.autograd.functional.jacobian(lambda v: q.push(v)[0], z0)
    assert torch.allclose(q.push(z0)[0], z)
    assert torch.allclose(q.log_prob(z), q.base.log_prob(z0) - torch.linalg.slogdet(jac)[1], atol=1e-4)
    with pytest.raises(vaekit.VaekitError, match="own draws"):
        q.log_prob(z.clone())


def _linear_gaussian_with_flow(posterior, D=6, k=3, sigma=0.5):
    """x = Wz + b + σ·noise with a W whose columns are not orthogonal, so p(z|x) has correlations a diagonal
    Gaussian cannot hold; the flow's base starts from the exact posterior's mean and marginal variances."""
    g = torch.Generator().manual_seed(4)
    W, b = torch.randn(D, k, generator=g), torch.randn(D, generator=g)
    torch.manual_seed(4)
    model = build(ModelConfig(hidden=(), latent_dim=k, likelihood="gaussian", sigma=sigma, input_shape=(D,),
                              posterior=posterior, flow_steps=2))
    cov = torch.linalg.inv(torch.eye(k) + W.T @ W / sigma ** 2)
    A = cov @ W.T / sigma ** 2
    with torch.no_grad():
        model.decoder.net[0].weight.copy_(W)
        model.decoder.net[0].bias.copy_(b)
        enc = model.encoder.net[0]
        enc.weight[:k], enc.bias[:k] = A, -A @ b
        enc.weight[k:2 * k], enc.bias[k:2 * k] = 0, torch.log(torch.diagonal(cov))
    return model, td.MultivariateNormal(b, W @ W.T + sigma ** 2 * torch.eye(D))


@pytest.mark.parametrize("posterior", ["planar", "iaf"])
def test_the_flow_posteriors_iwae_bound_stays_below_the_exact_log_likelihood(posterior):
    model, marginal = _linear_gaussian_with_flow(posterior)
    x = marginal.sample(torch.Size((200,)))
    exact = marginal.log_prob(x)
    # fit the encoder and the flow to these x on the ELBO, the decoder (the true model) held fixed
    trained = [p for name, p in model.named_parameters() if not name.startswith("decoder")]
    opt = torch.optim.Adam(trained, lr=1e-2)
    g = torch.Generator().manual_seed(5)
    for _ in range(300):
        opt.zero_grad()
        model.loss(x, generator=g).loss.backward()
        opt.step()
    with torch.no_grad():
        elbo = log_likelihood(model, x, 1, torch.Generator().manual_seed(0))
        iwae = log_likelihood(model, x, 2000, torch.Generator().manual_seed(1))
    gap = (exact - iwae)
    se = gap.std() / math.sqrt(len(x))
    assert (exact - elbo).mean() > 0  # the ELBO is below
    assert gap.mean() > -3 * se and gap.mean().abs() < 0.05  # the bound: below log p(x), and tight at K = 2000


def test_priors_and_flows_train_evaluate_and_reload_from_the_cli(tmp_path):
    out = tmp_path / "vamp"
    assert main(["train", "--data", "digits", "--prior", "vamp", "--posterior", "iaf", "--set", "model.prior_components=12",
                 "--set", "model.flow_steps=2", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    cfg = json.loads((out / "config.json").read_text())["model"]
    assert (cfg["prior"], cfg["posterior"], cfg["prior_components"], cfg["flow_steps"]) == ("vamp", "iaf", 12, 2)
    assert main(["eval", str(out), "--k", "100", "--subset", "40", "--no-baselines", "--no-progress"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert math.isfinite(report["log_px"]) and report["log_px"] > report["elbo"] - 3 * report["elbo_se"]
    model = vaekit.load(out)
    assert model.prior.pseudo_inputs.shape == (12, 1, 8, 8) and len(model.posterior.steps) == 2
    assert main(["sample", str(out), "--n", "4"]) == 0


def test_a_flow_with_an_estimator_that_needs_its_density_anywhere_is_refused(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--posterior", "planar", "--objective", "iwae", "--estimator", "dreg",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.posterior='planar'" in err


def test_the_python_api_takes_priors_and_posteriors_by_name_or_object():
    enc, dec = nn.Sequential(nn.Flatten(), nn.Linear(64, 3 * 4)), nn.Sequential(nn.Linear(4, 64), nn.Unflatten(1, (1, 8, 8)))
    model = vaekit.VAE(enc, dec, latent_dim=4, prior="vamp", posterior=IAF(4, flow_steps=2), input_shape=(1, 8, 8))
    assert model.describe().prior == "vamp" and model.describe().flow_steps == 2
    assert torch.isfinite(model.loss(torch.rand(5, 1, 8, 8).bernoulli()).loss)
    with pytest.raises(vaekit.VaekitError, match="input_shape"):
        vaekit.VAE(enc, dec, latent_dim=4, prior="vamp")

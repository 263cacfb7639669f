import math

import torch

from vaekit import build
from vaekit.config import ModelConfig
from vaekit.objectives import IWAE

from .test_models import linear_gaussian, set_exact_posterior


def _grads(model, x, seed):
    model.zero_grad()
    model.loss(x, generator=torch.Generator().manual_seed(seed)).loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_iwae_with_one_sample_has_exactly_the_elbo_gradients():
    cfg = ModelConfig(input_shape=(1, 8, 8), likelihood="bernoulli", hidden=(32,), latent_dim=4)
    torch.manual_seed(0)
    elbo = build(ModelConfig(**{**cfg.__dict__, "kl_estimator": "sampled"}))
    iwae = build(ModelConfig(**{**cfg.__dict__, "objective": "iwae", "iwae_k": 1}))
    iwae.load_state_dict(elbo.state_dict())
    x = torch.bernoulli(torch.full((16, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(1))
    for seed in range(3):
        for a, b in zip(_grads(elbo, x, seed), _grads(iwae, x, seed)):
            assert torch.equal(a, b)  # bit for bit
    iwae.objective = IWAE(k=2)  # and the identity is not an accident of the test: two samples give other gradients
    assert max((a - b).abs().max() for a, b in zip(_grads(elbo, x, 0), _grads(iwae, x, 0))) > 1e-3


def test_iwae_loss_is_the_log_mean_of_importance_weights():
    model = build(ModelConfig(input_shape=(5,), likelihood="gaussian", hidden=(8,), latent_dim=3, objective="iwae", iwae_k=7))
    x = torch.randn(4, 5)
    out = model.loss(x, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    q = model.encode(x)
    z = q.mu + q.stddev * torch.randn((7, 4, 3), generator=g)
    p = torch.distributions.Normal(model.decoder(z)[:, :, 0], 1.0)
    log_w = (p.log_prob(x).sum(-1) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
             - torch.distributions.Normal(q.mu, q.stddev).log_prob(z).sum(-1))  # (7, 4)
    expected = -(torch.logsumexp(log_w, 0) - math.log(7)).mean()
    assert torch.allclose(out.loss, expected, atol=1e-5)


def test_iwae_is_exact_with_the_exact_posterior_and_tighter_than_the_elbo():
    sigma = 0.5
    model, W, b, marginal = linear_gaussian(sigma=sigma)
    x = marginal.sample((32,))
    exact = marginal.log_prob(x).mean()
    set_exact_posterior(model, W, b, sigma)
    model.objective = IWAE(k=5)
    with torch.no_grad():
        bound = -model.loss(x, generator=torch.Generator().manual_seed(0)).loss
    assert abs(bound - exact) < 1e-4  # every importance weight equals p(x)
    torch.nn.init.normal_(model.encoder.net[0].weight, std=0.3)  # a poor encoder: the bound is below, and tightens with K
    bounds = []
    for k in (1, 10, 100):
        model.objective = IWAE(k=k)
        with torch.no_grad():
            bounds.append(torch.stack([-model.loss(x, generator=torch.Generator().manual_seed(s)).loss for s in range(20)]).mean())
    assert bounds[0] < bounds[1] < bounds[2] < exact


def test_sampled_kl_averages_to_the_analytic_kl():
    model = build(ModelConfig(input_shape=(6,), likelihood="gaussian", hidden=(), latent_dim=3, kl_estimator="sampled", mc_samples=20000))
    x = torch.randn(3, 6)
    with torch.no_grad():
        sampled = model.loss(x, generator=torch.Generator().manual_seed(0)).kl
        analytic = model.encode(x).kl().mean()
    assert abs(sampled - analytic) < 0.02

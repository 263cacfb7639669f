import math

import pytest
import torch

from vaekit.data.parts import bernoulli16
from vaekit.distributions import (Bernoulli, Categorical256, DiagonalGaussian, Gaussian, GaussianLearned, StandardNormal,
                                  kl_standard_normal)


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.3, -2.0, 1.0]])
    q = DiagonalGaussian(mu, log_var)
    z = q.rsample(400_000, generator=g)  # (n, 1, 3)
    mc = (q.log_prob(z) - StandardNormal(3).log_prob(z)).mean()
    assert abs(mc.item() - q.kl().item()) < 0.02
    # and the textbook formula, unit by unit
    sigma2 = log_var.exp()
    assert torch.allclose(kl_standard_normal(mu, log_var), 0.5 * (sigma2 + mu**2 - 1 - torch.log(sigma2)))
    assert torch.allclose(q.kl(), torch.distributions.kl_divergence(q.dist, torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(3), torch.ones(3)), 1)))


def test_reparameterized_sample_has_the_posterior_moments():
    q = DiagonalGaussian(torch.tensor([1.0, -2.0]), torch.tensor([0.0, math.log(0.25)]))
    z = q.rsample(200_000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.01)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01)


def test_bernoulli_log_prob_is_negative_bce():
    logits = torch.randn(4, 1, 3, 3)
    x = torch.rand(4, 3, 3)  # [0, 1] intensities as well as binary values
    x[0] = (x[0] > 0.5).float()
    p = torch.sigmoid(logits[:, 0])
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum((1, 2))
    lik = Bernoulli(logits, event_ndim=2)
    assert torch.allclose(lik.log_prob(x), expected, atol=1e-5)
    assert torch.allclose(lik.mean, p)


def test_bernoulli_in_place_log_prob_matches_and_falls_back_where_exp_overflows():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, 1, 28, 28, generator=g) * 8  # logits of ±30 occur in trained decoders
    x = (torch.rand(3, 28, 28, generator=g) < 0.3).float()
    expected = torch.distributions.Bernoulli(logits=logits[:, :, 0].double()).log_prob(x.double()).sum((-2, -1))
    with torch.no_grad():
        fast = Bernoulli(logits.clone(), event_ndim=2).log_prob_(x)
        huge = logits.clone()
        huge[0, 0, 0, 0, 0] = 200.0  # e^200 overflows float32: the exact path must take over
        exact = Bernoulli(huge.clone(), event_ndim=2).log_prob_(x)
    assert fast.shape == (50, 3)
    assert torch.allclose(fast.double(), expected, atol=1e-3, rtol=1e-6)
    assert torch.isfinite(exact).all()
    assert torch.allclose(exact, Bernoulli(huge, event_ndim=2).log_prob(x))
    logits.requires_grad_(True)  # with gradients on, nothing is overwritten
    Bernoulli(logits, event_ndim=2).log_prob_(x).sum().backward()
    assert torch.allclose(logits.grad[:, :, 0], x - torch.sigmoid(logits.detach()[:, :, 0]), atol=1e-6)


def test_bernoulli_log_prob_gradients_match_autograd_of_the_textbook_formula():
    g = torch.Generator().manual_seed(3)
    moderate = torch.randn(5, 4, 1, 7, generator=g) * 10
    huge = moderate.clone()
    huge[0, 0, 0, 0] = 120.0  # e^120 overflows float32: the value must come from softplus, the gradient stay x − 1
    x = torch.rand(4, 7, generator=g)  # one x broadcast over 5 Monte Carlo decodes
    w = torch.randn(5, 4, generator=g)  # an arbitrary upstream gradient

    def reference(l, x):
        return (x.double() * l.double() - torch.nn.functional.softplus(l.double())).sum(-1)

    cases = [(moderate, x.clone().requires_grad_(True)), (huge, x.clone().requires_grad_(True)), (huge, x)]
    for logits, lik_x in cases:
        ref_x = x.double().requires_grad_(lik_x.requires_grad)
        mine = logits.clone().requires_grad_(True)
        ref = logits[:, :, 0].clone().requires_grad_(True)
        value = Bernoulli(mine, event_ndim=1).log_prob(lik_x)
        expected = reference(ref, ref_x)
        assert torch.allclose(value.double(), expected, rtol=1e-6, atol=1e-4)
        (value * w).sum().backward()
        (expected * w.double()).sum().backward()
        assert torch.allclose(mine.grad[:, :, 0], ref.grad, atol=1e-6)
        if lik_x.requires_grad:  # the data's gradient too, summed over the decodes it was broadcast to
            assert lik_x.grad.shape == x.shape and torch.allclose(lik_x.grad.double(), ref_x.grad, rtol=1e-5, atol=1e-4)
    small, x_small = torch.randn(2, 1, 3, dtype=torch.double, requires_grad=True), torch.rand(2, 3, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda l: Bernoulli(l, 1).log_prob(x_small), small)


def test_gaussian_fixed_sigma_log_prob():
    loc, x, sigma = torch.randn(5, 1, 7), torch.randn(5, 7), 0.3
    expected = (-((x - loc[:, 0]) ** 2) / (2 * sigma**2) - 0.5 * math.log(2 * math.pi * sigma**2)).sum(1)
    assert torch.allclose(Gaussian(loc, 1, sigma).log_prob(x), expected, atol=1e-4)
    # σ = 1: −log p = ½‖x − x̂‖² + D/2·log 2π
    half_sq = 0.5 * ((x - loc[:, 0]) ** 2).sum(1) + 7 / 2 * math.log(2 * math.pi)
    assert torch.allclose(-Gaussian(loc, 1).log_prob(x), half_sq, atol=1e-4)


def test_gaussian_learned_sigma_log_prob():
    params, x = torch.randn(3, 2, 6), torch.randn(3, 6)
    mu, log_var = params[:, 0], params[:, 1]
    expected = (-0.5 * (math.log(2 * math.pi) + log_var + (x - mu) ** 2 / log_var.exp())).sum(1)
    assert torch.allclose(GaussianLearned(params, 1).log_prob(x), expected, atol=1e-4)


def test_categorical_log_prob_and_mean():
    logits = torch.randn(2, 256, 1, 2, 2)
    x = torch.randint(0, 256, (2, 1, 2, 2)).float() / 255
    lik = Categorical256(logits, event_ndim=3)
    logp = torch.log_softmax(logits, 1)
    expected = logp.gather(1, (x * 255).round().long().unsqueeze(1)).squeeze(1).sum((1, 2, 3))
    assert torch.allclose(lik.log_prob(x), expected, atol=1e-4)
    assert torch.allclose(lik.mean, (logp.exp() * torch.arange(256.0).view(1, 256, 1, 1, 1)).sum(1) / 255, atol=1e-5)
    s = lik.sample(torch.Generator().manual_seed(0))
    assert s.shape == x.shape and torch.equal(s, (s * 255).round() / 255)


def test_likelihoods_broadcast_monte_carlo_samples():
    x = torch.rand(4, 5)
    params = torch.randn(3, 4, 1, 5)  # L = 3 samples of z for each of 4 points
    lp = Bernoulli(params, 1).log_prob(x)
    assert lp.shape == (3, 4)
    assert torch.allclose(lp[1], Bernoulli(params[1], 1).log_prob(x))


def test_bernoulli16_is_unbiased_and_seeded():
    p = torch.tensor([0.0, 0.001, 0.3, 0.5, 0.999, 1.0]).repeat(200_000, 1)
    x = bernoulli16(p, torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert x[:, 0].sum() == 0 and x[:, -1].sum() == len(x)
    # each rate within 4 standard errors of p
    se = (p[0] * (1 - p[0]) / len(x)).sqrt()
    assert ((x.mean(0) - p[0]).abs() <= 4 * se + 1e-6).all()
    assert torch.equal(x, bernoulli16(p, torch.Generator().manual_seed(0)))


def test_a_sigmoid_mean_keeps_gaussian_decoders_in_the_unit_interval():
    raw = torch.randn(4, 2, 3, 3) * 5
    x = torch.rand(4, 3, 3)
    lik = GaussianLearned(raw, event_ndim=2, mean="sigmoid")
    loc, var = torch.sigmoid(raw[:, 0]), raw[:, 1].clamp(min=GaussianLearned.min_log_var).exp()
    expected = (-0.5 * ((x - loc) ** 2 / var + var.log() + math.log(2 * math.pi))).sum((1, 2))
    assert torch.allclose(lik.log_prob(x), expected, atol=1e-4) and torch.allclose(lik.mean, loc)
    assert torch.allclose(Gaussian(raw[:, :1], event_ndim=2, sigma=0.5, mean="sigmoid").mean, loc)
    assert torch.allclose(GaussianLearned(raw, event_ndim=2).mean, raw[:, 0])  # linear by default


def test_a_sigmoid_mean_needs_a_gaussian_likelihood():
    from dataclasses import replace

    from vaekit.config import ModelConfig
    from vaekit.errors import VaekitError

    with pytest.raises(VaekitError, match="model.gaussian_mean='sigmoid' does not apply to this model .*model.likelihood='bernoulli'"):
        replace(ModelConfig(), input_shape=(1, 8, 8), likelihood="bernoulli", gaussian_mean="sigmoid")

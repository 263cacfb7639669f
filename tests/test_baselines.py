import math

import torch

from vaekit.baselines import hmc_step, mcem_step, wake_sleep_step

from .test_models import linear_gaussian


def test_hmc_leaves_a_correlated_gaussian_invariant_and_finds_it_from_afar():
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    target = torch.distributions.MultivariateNormal(mean, cov)
    g = torch.Generator().manual_seed(0)
    for start in (target.sample((4000,)), torch.zeros(4000, 2)):  # at the target already, then from elsewhere
        z, rates = start, []
        for _ in range(60):
            z, acc = hmc_step(z, target.log_prob, step_size=0.25, n_leapfrog=8, generator=g)
            rates.append(acc.float().mean().item())
        assert torch.allclose(z.mean(0), mean, atol=0.06)
        assert torch.allclose(torch.cov(z.T), cov, atol=0.08)
        rate = sum(rates) / len(rates)
        print(f"HMC acceptance rate {rate:.2f}")
        assert 0.6 < rate <= 1.0


def test_tuned_step_size_brings_hmc_to_the_wanted_acceptance():
    from vaekit.baselines import tuned_step_size

    target = torch.distributions.MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, 0.9], [0.9, 1.0]]))
    g = torch.Generator().manual_seed(0)
    z = target.sample((500,))
    for start, want in ((0.01, 0.9), (2.0, 0.9), (0.5, 0.6)):
        step, rates = start, []
        for i in range(400):
            z, acc = hmc_step(z, target.log_prob, step, n_leapfrog=10, generator=g)
            step = tuned_step_size(step, acc.float().mean().item(), target=want, gain=0.2)
            rates.append(acc.float().mean().item())
        rate = sum(rates[-100:]) / 100
        print(f"from step size {start}: {step:.3f}, acceptance {rate:.2f} (wanted {want})")
        assert abs(rate - want) < 0.04


def _exact_log_px(model, x, sigma):
    W, b = model.decoder.net[0].weight, model.decoder.net[0].bias
    return torch.distributions.MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(len(b))).log_prob(x).mean().item()


def test_monte_carlo_em_raises_the_exact_likelihood():
    sigma = 0.5
    model, W, b, marginal = linear_gaussian(sigma=sigma)
    x = marginal.sample((200,))
    with torch.no_grad():  # start the generative model away from the truth
        model.decoder.net[0].weight.mul_(0.3)
        model.decoder.net[0].bias.zero_()
    before = _exact_log_px(model, x, sigma)
    opt = torch.optim.Adam(model.decoder.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    z, rates = torch.zeros(200, 3), []
    for _ in range(60):
        z, rate = mcem_step(model, x, z, opt, step_size=0.1, n_leapfrog=5, n_hmc=3, generator=g)
        rates.append(rate)
    after = _exact_log_px(model, x, sigma)
    print(f"MCEM: exact log p(x) {before:.2f} -> {after:.2f}, acceptance {sum(rates) / len(rates):.2f}")
    assert after > before + 1.0 and after > marginal.log_prob(x).mean().item() - 0.5


def test_the_sleep_phase_fits_q_to_the_models_posterior():
    sigma = 0.5
    model, W, b, _ = linear_gaussian(sigma=sigma)
    model.mc_samples = 1
    lam = 1 + (W * W).sum(0) / sigma**2  # the exact posterior: N(Λ⁻¹Wᵀ(x − b)/σ², Λ⁻¹), Λ diagonal here
    frozen = torch.optim.SGD(model.decoder.parameters(), lr=0.0)  # the decoder is the truth: only sleep learns
    sleep = torch.optim.Adam(model.encoder.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    x_any = torch.randn(1000, 6)  # wake data; the sleep phase dreams as many pairs (z, x) from the model
    for step in range(1500):
        if step == 1000:  # settle: a smaller step once near
            sleep.param_groups[0]["lr"] = 0.002
        wake_sleep_step(model, x_any, frozen, sleep, g)
    x = torch.randn(5, 6) + b
    q = model.encode(x)
    assert torch.allclose(q.mean, (x - b) @ W / sigma**2 / lam, atol=0.1)
    assert torch.allclose(q.log_var, -torch.log(lam).expand(5, -1), atol=0.15)


def test_a_diverged_wake_sleep_step_is_a_clear_error():
    import pytest

    from vaekit.errors import VaekitError

    model, *_ = linear_gaussian(sigma=0.5)
    with torch.no_grad():
        next(model.decoder.parameters()).fill_(float("nan"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(VaekitError, match="wake-sleep diverged.*smaller step size"):
        wake_sleep_step(model, torch.randn(4, 6), opt, opt)


def test_hmc_importance_estimate_matches_the_exact_likelihood():
    from vaekit.baselines import hmc_log_likelihood

    sigma = 0.5
    model, W, b, marginal = linear_gaussian(sigma=sigma)
    x = marginal.sample((20,))
    est = hmc_log_likelihood(model, x, k=2000, generator=torch.Generator().manual_seed(0))
    err = est - marginal.log_prob(x)
    assert err.abs().max() < 0.1 and err.mean().abs() < 0.03


def test_hmc_importance_estimate_finds_both_modes_of_a_bimodal_posterior():
    """x ~ N(z², 0.1²) with z ~ N(0, 1): x = 1 has posterior modes at z = ±1. One chain finds one mode and
    falls log 2 short; several chains from prior draws find both, and the mixture of their fits is exact."""
    from types import SimpleNamespace

    from vaekit.baselines import hmc_log_likelihood

    sigma = 0.1
    normal = torch.distributions.Normal
    model = SimpleNamespace(latent_dim=1,
        prior=SimpleNamespace(log_prob=lambda z: normal(0.0, 1.0, validate_args=False).log_prob(z).sum(-1)),
        decode=lambda z: torch.distributions.Independent(normal(z**2, sigma, validate_args=False), 1))
    x = torch.tensor([[1.0], [0.5], [2.0]]).repeat(20, 1)
    grid = torch.linspace(-6, 6, 200_001)[:, None]
    exact = torch.logsumexp(normal(grid**2, sigma).log_prob(x.T) + normal(0.0, 1.0).log_prob(grid), 0) + math.log(12 / 200_000)
    g = torch.Generator().manual_seed(0)
    many = hmc_log_likelihood(model, x, k=2000, chains=8, generator=g) - exact
    one = hmc_log_likelihood(model, x, k=2000, chains=1, generator=g) - exact
    print(f"mean error with 8 chains {many.mean():+.3f}, with one {one.mean():+.3f} (log 2 = 0.693)")
    assert many.abs().max() < 0.1 and many.mean().abs() < 0.03
    assert abs(one.mean().item() + math.log(2)) < 0.1

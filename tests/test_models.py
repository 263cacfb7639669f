import math

import pytest
import torch

from vaekit import VAE, Autoencoder, DenoisingAutoencoder, build, load_dataset
from vaekit.config import DataConfig, ModelConfig
from vaekit.distributions import DiagonalGaussian


def linear_gaussian(D=6, k=3, sigma=0.5, seed=0):
    """A VAE whose decoder is x = Wz + b + σ·noise with orthogonal columns in W, so the exact posterior is diagonal."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, k, generator=g))
    W = q * torch.linspace(2.0, 0.5, k)
    b = torch.randn(D, generator=g)
    model = build(ModelConfig(hidden=(), latent_dim=k, likelihood="gaussian", sigma=sigma, input_shape=(D,), mc_samples=4000))
    with torch.no_grad():
        model.decoder.net[0].weight.copy_(W)
        model.decoder.net[0].bias.copy_(b)
    marginal = torch.distributions.MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(D))
    return model, W, b, marginal


def set_exact_posterior(model, W, b, sigma):
    """p(z|x) = N(Λ⁻¹Wᵀ(x − b)/σ², Λ⁻¹), Λ = I + WᵀW/σ² (diagonal here)."""
    lam = 1 + (W * W).sum(0) / sigma**2
    A = W.T / sigma**2 / lam[:, None]
    enc = model.encoder.net[0]
    with torch.no_grad():
        enc.weight.zero_()
        enc.weight[: len(lam)] = A
        enc.bias[: len(lam)] = -A @ b
        enc.bias[len(lam):] = -torch.log(lam)


def test_elbo_never_exceeds_exact_log_likelihood():
    sigma = 0.5
    model, W, b, marginal = linear_gaussian(sigma=sigma)
    x = marginal.sample((64,))
    exact = marginal.log_prob(x).mean()
    for seed in range(3):  # encoders far from the posterior: the bound is strictly below
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.encoder.net[0].weight, std=0.3)
        with torch.no_grad():
            elbo = -model.loss(x, generator=torch.Generator().manual_seed(seed)).loss
        assert elbo < exact
    set_exact_posterior(model, W, b, sigma)
    with torch.no_grad():
        elbo = -model.loss(x, generator=torch.Generator().manual_seed(0)).loss
    assert elbo <= exact + 0.05 and abs(elbo - exact) < 0.05


def test_exact_posterior_is_what_the_encoder_reports():
    sigma = 0.5
    model, W, b, _ = linear_gaussian(sigma=sigma)
    set_exact_posterior(model, W, b, sigma)
    x = torch.randn(1, 6)
    q = model.encode(x)
    lam = torch.eye(3) + W.T @ W / sigma**2
    assert torch.allclose(q.mean[0], torch.linalg.solve(lam, W.T @ (x[0] - b)) / sigma**2, atol=1e-5)
    assert torch.allclose(q.stddev[0] ** 2, torch.diag(torch.linalg.inv(lam)), atol=1e-5)


@pytest.fixture(scope="module")
def digits64():
    ds = load_dataset(DataConfig())
    x, _ = next(ds.train.batches(64))
    return x


@pytest.mark.parametrize("kind", ["ae", "dae", "vae"])
def test_losses_fall_when_overfitting_64_examples(digits64, kind):
    model = build(ModelConfig(kind=kind, latent_dim=8, hidden=(128,), likelihood="bernoulli", input_shape=(1, 8, 8)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        out = model.loss(digits64, generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-10:]) / 10 < 0.75 * losses[0]
    assert isinstance(model, {"ae": Autoencoder, "dae": DenoisingAutoencoder, "vae": VAE}[kind])


def test_denoising_loss_targets_the_clean_input(digits64):
    model = build(ModelConfig(kind="dae", corruption="mask", noise=0.5, likelihood="bernoulli", input_shape=(1, 8, 8)))
    g = torch.Generator().manual_seed(0)
    x_tilde = model.corrupt(digits64, torch.Generator().manual_seed(0))
    assert 0.3 < (x_tilde == 0).float().mean() and not torch.equal(x_tilde, digits64)
    expected = -model.decode(model.encode(x_tilde).mean).log_prob(digits64).mean()
    assert torch.allclose(model.loss(digits64, generator=g).loss, expected)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 28, 20), (3, 32, 32), (3, 7, 5)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-learned"])
def test_conv_nets_fit_any_image_size(shape, likelihood):
    model = build(ModelConfig(net="conv", latent_dim=4, likelihood=likelihood, input_shape=shape))
    x = torch.rand(5, *shape)
    assert model.decoder(torch.randn(5, 4)).shape == (5, 2 if likelihood == "gaussian-learned" else 1, *shape)
    assert model.decoder(torch.randn(2, 5, 4)).shape[:2] == (2, 5)
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, *shape)
    assert torch.isfinite(model.loss(x).loss)


def test_mc_samples_average_the_reconstruction_term():
    model = build(ModelConfig(latent_dim=2, hidden=(16,), likelihood="bernoulli", input_shape=(10,), mc_samples=5))
    x = torch.rand(3, 10)
    out = model.loss(x, generator=torch.Generator().manual_seed(0))
    q = model.encode(x)
    z = q.rsample(5, generator=torch.Generator().manual_seed(0))
    rec = -model.decode(z).log_prob(x).mean(0)
    assert torch.allclose(out.recon, rec.mean()) and torch.allclose(out.kl, q.kl().mean())
    assert torch.allclose(out.loss, (rec + q.kl()).mean())


def test_beta_and_kl_weight_scale_the_kl_term():
    model = build(ModelConfig(latent_dim=2, hidden=(16,), likelihood="bernoulli", input_shape=(10,), beta=4.0))
    x = torch.rand(3, 10)
    out = model.loss(x, kl_weight=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.loss, out.recon + 2.0 * out.kl)


def test_encode_returns_posterior_mean_and_std():
    model = build(ModelConfig(latent_dim=3, likelihood="bernoulli", input_shape=(1, 8, 8)))
    q = model.encode(torch.rand(2, 1, 8, 8))
    assert isinstance(q, DiagonalGaussian) and q.mean.shape == (2, 3) and (q.stddev > 0).all()
    assert math.isclose(q.stddev[0, 0].item() ** 2, q.log_var[0, 0].exp().item(), rel_tol=1e-5)

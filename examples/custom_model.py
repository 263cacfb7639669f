"""Your own networks, likelihood and prior in vaekit, without editing vaekit.

    python examples/custom_model.py                     # trains on the embedded 8×8 digits, writes runs/custom
    vaekit --import examples.custom_model eval runs/custom
    vaekit --import examples.custom_model report runs/custom

Three parts, each one class (or function) registered by name:
- ``continuous-bernoulli``: the continuous Bernoulli likelihood of Loaiza-Ganem & Cunningham (2019),
  the Bernoulli's density made proper on [0, 1] intensities;
- ``unit-mixture``: a prior that is a mixture of unit Gaussians with learned means;
- ``small-conv``: a convolutional encoder and decoder.
Registered names work wherever vaekit's own do: ``config.json``, ``--likelihood``, ``vaekit.load``.
"""
from __future__ import annotations

import math
import sys

import torch
from torch import nn

import vaekit
from vaekit.distributions import Likelihood


@vaekit.register("likelihood", "continuous-bernoulli")
class ContinuousBernoulli(Likelihood):
    """p(x|λ) = C(λ) λ^x (1 − λ)^(1−x) on x ∈ [0, 1], λ = σ(l) from the decoder's logit l.

    With λ = σ(l) the normalizing constant C(λ) = 2 atanh(1 − 2λ) / (1 − 2λ) is l / tanh(l/2) (2 at l = 0).
    """

    def __init__(self, params, event_ndim):
        super().__init__(params, event_ndim)
        self.logits = self.params.squeeze(-event_ndim - 1)  # (*batch, *event)

    @staticmethod
    def log_norm(logits: torch.Tensor) -> torch.Tensor:
        """log C per element; near l = 0 its series log 2 + l²/12, where l / tanh(l/2) loses digits."""
        small = logits.abs() < 1e-2
        safe = torch.where(small, torch.ones_like(logits), logits)
        return torch.where(small, math.log(2) + logits.pow(2) / 12, torch.log(safe / torch.tanh(safe / 2)))

    def log_prob(self, x):
        dims = tuple(range(-self.event_ndim, 0))
        l = self.logits
        return (x * l - nn.functional.softplus(l) + self.log_norm(l)).sum(dims)

    @property
    def mean(self):
        l = self.logits
        small = l.abs() < 1e-2
        safe = torch.where(small, torch.ones_like(l), l)
        return torch.where(small, 0.5 + l / 12, torch.sigmoid(safe) / torch.tanh(safe / 2) - 1 / safe)

    def sample(self, generator=None):
        """Inverse CDF: x = log(1 + u (e^l − 1)) / l, u ~ U(0, 1); for l > 0 as 1 + log(u e^−l + 1 − u) / l,
        where e^l would overflow."""
        l = self.logits
        u = torch.rand(l.shape, generator=generator, device=l.device)
        small = l.abs() < 1e-2
        safe = torch.where(small, torch.ones_like(l), l)
        neg = torch.log1p(u * torch.expm1(-safe.abs())) / -safe.abs()  # the form for l < 0, stable there
        x = torch.where(safe < 0, neg, 1 + torch.log(u * torch.exp(-safe) + 1 - u) / safe)
        return torch.where(small, u, x)


@vaekit.register("prior", "unit-mixture")
class MixturePrior(nn.Module):
    """p(z) = (1/K) Σ_k N(z; μ_k, I) with learned means μ_k: trained and saved with the model."""

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent_dim))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        d = z.shape[-1]
        sq = (z.unsqueeze(-2) - self.means).pow(2).sum(-1)  # (*batch, K)
        return torch.logsumexp(-0.5 * sq, -1) - 0.5 * d * math.log(2 * math.pi) - math.log(len(self.means))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else self.means.device
        k = torch.randint(len(self.means), (n,), generator=generator, device=device)
        eps = torch.randn(n, self.means.shape[1], generator=generator, device=device)
        return self.means.detach().to(device)[k] + eps


class ConvEncoder(nn.Module):
    """(N, C, H, W) -> (N, 2·latent_dim): two stride-2 convolutions, then a linear layer to (μ, log σ²)."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, width: int = 16):
        super().__init__()
        c, h, w = shape
        self.body = nn.Sequential(nn.Conv2d(c, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(), nn.Flatten())
        n = 2 * width * ((h + 3) // 4) * ((w + 3) // 4)
        self.head = nn.Linear(n, 2 * latent_dim)

    def forward(self, x):
        return self.head(self.body(x))


class ConvDecoder(nn.Module):
    """(N, latent_dim) -> (N, C, H, W) logits: a linear layer, then two stride-2 transposed convolutions."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, width: int = 16):
        super().__init__()
        c, h, w = shape
        self.hw = ((h + 3) // 4, (w + 3) // 4)
        self.width = width
        self.head = nn.Sequential(nn.Linear(latent_dim, 2 * width * self.hw[0] * self.hw[1]), nn.ReLU())
        self.body = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(width, c, 4, 2, 1))
        self.shape = shape

    def forward(self, z):
        h = self.head(z).view(-1, 2 * self.width, *self.hw)
        return self.body(h)[..., : self.shape[1], : self.shape[2]]


@vaekit.register("net", "small-conv")
def small_conv(cfg, code_dim: int, latent_dim: int, n_params: int):
    """The two networks above by name, so config.json can say ``"net": "small-conv"`` and vaekit.load rebuild them."""
    shape = tuple(cfg.input_shape)
    return ConvEncoder(shape, code_dim // 2), ConvDecoder(shape, latent_dim)


small_conv.config_keys = frozenset()  # it reads no hidden/channels/activation


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embedded 8×8 digits as float tensors in [0, 1]: train, validation and test rows."""
    from vaekit.data.parts import materialize

    data = vaekit.load_dataset(vaekit.DataConfig())
    return tuple(materialize(part)[0] for part in data.parts)


def main(out: str = "runs/custom", epochs: int = 30) -> dict:
    x_train, x_val, x_test = digits()
    torch.manual_seed(0)
    # by name, so every vaekit command can rebuild it from config.json (with --import examples.custom_model)
    model = vaekit.build(vaekit.ModelConfig(net="small-conv", likelihood="continuous-bernoulli", prior="unit-mixture", latent_dim=8,
                                            input_shape=tuple(x_train.shape[1:])))
    vaekit.fit(model, x_train, val=x_val, test=x_test, epochs=epochs, batch_size=64, out=out, objective=vaekit.ELBO(kl="sampled"))
    result = vaekit.evaluate(model, x_test, k=500)
    print(f"test ELBO {result['elbo']:.2f}, log p(x) {result['log_px']:.2f} ± {result['log_px_se']:.2f} nats (K = 500)")
    # the same weights in modules built by hand: any nn.Module takes them
    shape = tuple(x_train.shape[1:])
    again = vaekit.load(out, model=vaekit.VAE(ConvEncoder(shape, 8), ConvDecoder(shape, 8), likelihood="continuous-bernoulli",
                                              latent_dim=8, prior=MixturePrior(8)))
    assert torch.equal(again.encode(x_test[:4]).mean, model.eval().encode(x_test[:4]).mean)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])

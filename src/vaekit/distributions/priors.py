"""Learned priors p(z): mixtures of diagonal Gaussians, with free components (``mog``) or components that are the
posteriors of learned pseudo-inputs (``vamp``, Tomczak & Welling 2018). Neither has a closed-form KL against the
posterior, so the ELBO estimates it with the posterior's samples, and ``vaekit eval``'s log p(x) is the same
importance-sampled estimate as for any prior."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VaekitError
from ..registry import register
from .common import LOG_2PI, full_precision
from .latent import DiagonalGaussian
from .posteriors import FlowPosterior


def mixture_log_prob(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """log Σ_k w_k N(z; μ_k, diag σ_k²) for z (*batch, D), components (K, D), log w (K,): (*batch,).

    The squares are expanded into three matrix products, so no (*batch, K, D) tensor is made: with K = 500
    components and thousands of importance samples that tensor would not fit in memory."""
    z = full_precision(z)
    flat = z.reshape(-1, z.shape[-1])
    precision = torch.exp(-log_var)  # (K, D)
    const = (LOG_2PI + log_var + mu.pow(2) * precision).sum(-1)  # (K,)
    quad = flat.pow(2) @ precision.T - 2 * flat @ (mu * precision).T + const  # (N, K)
    return torch.logsumexp(log_weights - 0.5 * quad, -1).reshape(z.shape[:-1])


def mixture_sample(n: int, mu: torch.Tensor, log_var: torch.Tensor, log_weights: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """n draws of the mixture: a component by its weight, then a draw of its Gaussian; (n, D) on the generator's
    device (or the components')."""
    device = generator.device if generator is not None else mu.device
    mu, log_var, log_weights = mu.detach().to(device), log_var.detach().to(device), log_weights.detach().to(device)
    k = torch.multinomial(log_weights.softmax(-1), n, replacement=True, generator=generator)
    eps = torch.randn(n, mu.shape[-1], generator=generator, device=device)
    return mu[k] + torch.exp(0.5 * log_var[k]) * eps


@register("prior", "mog")
class MixtureOfGaussians(nn.Module):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²) with the means, variances and weights learned with the model
    (``model.prior_components`` components, 10 by default; means start from N(0, I), variances at 1)."""

    config_keys = frozenset({"prior_components"})

    def __init__(self, latent_dim: int, prior_components: int | None = None):
        super().__init__()
        self.prior_components = _components(prior_components, 10)
        self.means = nn.Parameter(torch.randn(self.prior_components, latent_dim))
        self.log_vars = nn.Parameter(torch.zeros(self.prior_components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(self.prior_components))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over the units: (*batch,)."""
        return mixture_log_prob(z, self.means, self.log_vars, self.logits.log_softmax(-1))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, latent_dim) draws."""
        return mixture_sample(n, self.means, self.log_vars, self.logits.log_softmax(-1), generator)


@register("prior", "vamp")
class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) Σ_k q(z | u_k), the model's own posterior at K learned
    pseudo-inputs u_k (``model.prior_components``, 500 by default as in the paper).

    The pseudo-inputs live in data space, kept in [0, 1] by a hard tanh and started from N(0.05, 0.01²) as in the
    authors' code; they are trained and saved with the model. The prior needs the model's encoder, so the model
    binds it when it is built (``bind``); it takes a model with no condition. Under a flow posterior the components
    are the flow's base Gaussians at the pseudo-inputs, since the flow's density is known only at its own draws.
    """

    config_keys = frozenset({"prior_components"})

    def __init__(self, latent_dim: int, prior_components: int | None = None):
        super().__init__()
        self.latent_dim = latent_dim
        self.prior_components = _components(prior_components, 500)
        self.register_parameter("pseudo_inputs", None)  # made by bind, once the data's shape is known
        self._encode = None

    def bind(self, model: nn.Module) -> None:
        """Use ``model``'s encoder for the components; called once by the model that owns the prior."""
        if model.conditional:
            raise VaekitError("prior='vamp': the VampPrior mixes posteriors of pseudo-inputs, which a conditional model "
                              "cannot encode without a label; use prior='mog'")
        if model.input_shape is None:
            raise VaekitError("prior='vamp': its pseudo-inputs have the shape of the data; give the model input_shape=")
        self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(self.prior_components, *model.input_shape))
        self._encode = model.encode

    def components(self) -> DiagonalGaussian:
        """q(z | u_k) for the K pseudo-inputs: a (K, D) diagonal Gaussian."""
        if self._encode is None:
            raise VaekitError("prior='vamp': the VampPrior is not bound to a model (a VAE binds its prior when built)")
        q = self._encode(F.hardtanh(self.pseudo_inputs, 0.0, 1.0))
        q = q.base if isinstance(q, FlowPosterior) else q
        if not isinstance(q, DiagonalGaussian):
            raise VaekitError(f"prior='vamp': the model's posterior is a {type(q).__name__}; the VampPrior needs a "
                              "diagonal Gaussian one or a flow on one")
        return q

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over the units: (*batch,)."""
        q = self.components()
        return mixture_log_prob(z, q.mu, q.log_var, torch.full((len(q.mu),), -math.log(len(q.mu)), device=q.mu.device))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, latent_dim) draws: a pseudo-input uniformly, then its posterior."""
        q = self.components()
        return mixture_sample(n, q.mu, q.log_var, torch.zeros(len(q.mu), device=q.mu.device), generator)


def _components(k: int | None, default: int) -> int:
    if k is None:
        return default
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise VaekitError(f"model.prior_components={k!r}: expected a positive integer")
    return k

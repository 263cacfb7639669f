"""The latent side: the posterior q(z|x) (a diagonal Gaussian, or a point mass for autoencoders), the standard
normal prior, and the KL divergences known in closed form."""
from __future__ import annotations

from typing import Any

import torch
import torch.distributions as td

from ..registry import register
from .common import LOG_2PI
from .common import full_precision as _full_precision
from .common import sample_shape_of as _shape


def kl_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per latent unit: ½(σ² + μ² − 1 − log σ²)."""
    return 0.5 * (log_var.exp() + mu.pow(2) - 1 - log_var)


class DiagonalGaussian(td.Distribution):
    """q(z|x) = N(μ, diag σ²) from the encoder's (μ, log σ²), as a ``torch.distributions`` distribution
    whose event is the latent vector; ``td.kl_divergence`` knows it against ``StandardNormal`` and itself."""

    arg_constraints = {"mu": td.constraints.real, "log_var": td.constraints.real}
    support = td.constraints.real_vector
    has_rsample = True

    def __init__(self, mu: torch.Tensor, log_var: torch.Tensor):
        self.mu, self.log_var = _full_precision(mu), _full_precision(log_var)
        super().__init__(self.mu.shape[:-1], self.mu.shape[-1:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    @property
    def mode(self) -> torch.Tensor:
        return self.mu

    @property
    def stddev(self) -> torch.Tensor:
        return torch.exp(0.5 * self.log_var)

    @property
    def variance(self) -> torch.Tensor:
        return self.log_var.exp()

    @property
    def dist(self) -> td.Independent:
        """The same distribution as a ``td.Independent(td.Normal)`` (slower, for what this class lacks)."""
        return td.Independent(td.Normal(self.mu, self.stddev, validate_args=False), 1)

    def rsample(self, sample_shape: int | tuple[int, ...] | torch.Size | None = torch.Size(),
                generator: torch.Generator | None = None) -> torch.Tensor:
        """z = μ + σ ⊙ ε, ε ~ N(0, I): the reparameterization trick. Shape (*sample_shape, *batch, k)."""
        shape = _shape(sample_shape) + self.mu.shape
        eps = torch.randn(shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype)
        return self.mu + self.stddev * eps

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def detach(self) -> "DiagonalGaussian":
        """The same distribution with its parameters cut from the graph: log q(z|x) with gradients through z only
        (the doubly reparameterized estimator's)."""
        return DiagonalGaussian(self.mu.detach(), self.log_var.detach())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((z - self.mu).pow(2) / self.log_var.exp() + self.log_var + LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return 0.5 * (self.log_var + 1 + LOG_2PI).sum(-1)

    def kl_per_unit(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) per latent unit, in closed form: (*batch, k)."""
        return kl_standard_normal(self.mu, self.log_var)

    def kl(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) in closed form, summed over latent units: shape (*batch,)."""
        return self.kl_per_unit().sum(-1)


class PointMass:
    """The deterministic code of a plain autoencoder, in the posterior's interface."""

    def __init__(self, z: torch.Tensor):
        self.z = z

    @property
    def mean(self) -> torch.Tensor:
        """The code g(x)."""
        return self.z

    mode = mean

    @property
    def stddev(self) -> torch.Tensor:
        """Zero: the code is a point."""
        return torch.zeros_like(self.z)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        """The code itself, repeated over ``sample_shape``."""
        return self.z.expand(*_shape(sample_shape), *self.z.shape)

    sample = rsample


@register("prior", "standard-normal")
class StandardNormal(td.Distribution):
    """The prior p(z) = N(0, I) over k units.

    The contract a user's prior keeps (register it with ``vaekit.register("prior", name)``):
    ``__init__(latent_dim)``, ``log_prob(z)`` summed over the units, and ``sample(n, generator)``;
    a prior that is an ``nn.Module`` has its parameters trained and saved with the model.
    """

    arg_constraints: dict = {}
    support = td.constraints.real_vector
    has_rsample = True

    def __init__(self, k: int):
        self.k = k
        super().__init__(torch.Size(), torch.Size((k,)), validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self.k)

    @property
    def stddev(self) -> torch.Tensor:
        return torch.ones(self.k)

    def sample(self, n: int | tuple[int, ...] = (), generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """(*n, k) draws, on ``device`` or else the generator's."""
        device = device if device is not None else (generator.device if generator is not None else None)
        return torch.randn(*_shape(n), self.k, generator=generator, device=device)

    rsample = sample

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.tensor(0.5 * self.k * (1 + LOG_2PI))


@td.register_kl(DiagonalGaussian, StandardNormal)
def _kl_diagonal_standard(q: DiagonalGaussian, p: StandardNormal) -> torch.Tensor:
    return q.kl()


@td.register_kl(DiagonalGaussian, DiagonalGaussian)
def _kl_diagonal_diagonal(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """½ Σ (σ_q² / σ_p² + (μ_q − μ_p)² / σ_p² − 1 + log σ_p² − log σ_q²)."""
    return 0.5 * ((q.log_var - p.log_var).exp() + (q.mu - p.mu).pow(2) / p.log_var.exp() - 1 + p.log_var - q.log_var).sum(-1)


def closed_form_kl(q_z: Any, prior: Any) -> torch.Tensor | None:
    """KL(q ‖ p) per example where ``torch.distributions`` knows a closed form for the pair, else None."""
    if not isinstance(q_z, td.Distribution) or not isinstance(prior, td.Distribution):
        return None
    try:
        return td.kl_divergence(q_z, prior)
    except NotImplementedError:
        return None

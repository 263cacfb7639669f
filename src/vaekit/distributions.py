"""Distributions as objects: likelihoods p(x|z), the posterior q(z|x) and the prior p(z).

Each wraps a ``torch.distributions`` object whose ``log_prob`` sums over the event
dimensions (pixels, latent units), so the loss reads ``-p_x.log_prob(x) + β·KL``.
Every ``sample`` takes an explicit ``generator`` so a seed makes a run repeat.
Decoders emit raw parameters shaped (*batch, P, *event); a likelihood class turns
them into a distribution, and ``P`` is its ``n_params``.
"""
from __future__ import annotations

import math

from typing import Any

import torch
import torch.distributions as td
import torch.nn.functional as F

from .registry import register

LOG_2PI = math.log(2 * math.pi)


def _full_precision(t: torch.Tensor) -> torch.Tensor:
    """Densities are summed over hundreds of terms: in fp32 even when the networks ran under bf16 autocast."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class Likelihood:
    """p(x|z) for one decoder output; subclasses set ``n_params`` and build ``dist``.

    The contract a user's likelihood keeps (register it with ``vaekit.register("likelihood", name)``):
    ``n_params`` (parameters per element of x), ``__init__(params, event_ndim)`` with params shaped
    (*batch, n_params, *event), ``log_prob(x)`` summed over the event, ``mean`` and ``sample(generator)``.
    The rest has defaults: ``options``/``config_values`` (ModelConfig keys it reads; none), ``log_prob_`` (the
    in-place variant for spent decodes; ``log_prob``), ``entropy`` (``dist.entropy()``).
    """

    n_params: int = 1
    config_keys: frozenset[str] = frozenset()  # the ModelConfig keys ``options`` reads
    dist: td.Independent

    def __init__(self, params: torch.Tensor, event_ndim: int):
        self.params, self.event_ndim = _full_precision(params), event_ndim

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        """The keyword arguments beyond (params, event_ndim) that a ModelConfig sets for this likelihood."""
        return {}

    @classmethod
    def config_values(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The ModelConfig values that give these keyword arguments: ``options`` inverted."""
        return {}

    def entropy(self) -> torch.Tensor:
        """H[p(x|z)] summed over the event, where ``torch.distributions`` defines it."""
        return self.dist.entropy()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the event: shape (*batch,)."""
        return self.dist.log_prob(x)

    @property
    def mean(self) -> torch.Tensor:
        """E[x|z], shaped like one example per batch entry."""
        return self.dist.mean

    def log_prob_(self, x: torch.Tensor) -> torch.Tensor:
        """``log_prob`` free to use the parameters' memory as scratch space: the likelihood is spent
        afterwards. For throw-away decodes, such as the K samples of importance sampling."""
        return self.log_prob(x)

    def sample(self, sample_shape: Any = (), generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws x ~ p(x|z) shaped (*sample_shape, *mean.shape), as ``torch.distributions`` has it; ``sample(generator)``
        (one draw, the contract a user's likelihood keeps) works too."""
        if isinstance(sample_shape, torch.Generator):
            sample_shape, generator = (), sample_shape
        with torch.no_grad():
            return self._draw(_shape(sample_shape), generator)

    def rsample(self, sample_shape: Any = (), generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterized draws, for the likelihoods that have them (the Gaussians)."""
        raise NotImplementedError(f"{type(self).__name__} has no reparameterized sample")

    def _draw(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not sample")


@register("likelihood", "bernoulli")
class Bernoulli(Likelihood):
    """Pixels in {0, 1} (or [0, 1] intensities): −log p(x|z) is the summed binary cross-entropy."""

    def __init__(self, params, event_ndim):
        super().__init__(params, event_ndim)
        # squeeze, not select: select's backward fills a zero tensor of the decoder's output and copies into it
        self.logits = self.params.squeeze(-event_ndim - 1)
        # validate_args off: [0, 1] intensities are a common, deliberate use of this likelihood
        self.dist = td.Independent(td.Bernoulli(logits=self.logits, validate_args=False), event_ndim)

    def log_prob(self, x):
        return _BernoulliLogProb.apply(self.logits.flatten(-self.event_ndim), x.flatten(-self.event_ndim))

    def log_prob_(self, x):
        logits = self.logits.flatten(-self.event_ndim)
        if torch.is_grad_enabled() or logits.amax() > _EXP_MAX:
            return self.log_prob(x)
        x_l = (logits * x.flatten(-self.event_ndim)).sum(-1)
        return x_l - logits.exp_().add_(1).log_().sum(-1)  # in place: no new tensor

    @property
    def mean(self):
        """The pixel probabilities σ(l)."""
        return torch.sigmoid(self.logits)

    def _draw(self, shape, generator):
        return torch.bernoulli(self.mean.expand(*shape, *self.mean.shape), generator=generator)


_EXP_MAX = math.log(torch.finfo(torch.float32).max) - 1  # e^l + 1 is finite below this


class _BernoulliLogProb(torch.autograd.Function):
    """log Bernoulli(x; σ(l)) = Σ_d x·l − log(1 + e^l), with gradient x − σ(l) per logit.

    Autograd's softplus, product and sum (or einsum, whose backward is a batched matmul of
    1×1 blocks) take three times as long on CPU. Here log(1 + e^l) is taken as exp, add,
    log, which cost less than one softplus (its log1p is slow), and u = 1 + e^l is kept so
    the backward pass is σ(l) = 1 − 1/u: four cheap passes. For l < −16 the rounding of
    1 + e^l costs < 1e-7 per pixel in the value and the gradient.
    """

    @staticmethod
    def forward(ctx, logits, x):
        u = torch.exp(logits).add_(1)
        if logits.device.type == "cpu":  # a reduction costs less here than a where pass, and no sync to speak of
            log_u = torch.log(u) if logits.amax() <= _EXP_MAX else F.softplus(logits)
        else:  # no host sync on an accelerator: e^l overflows to inf above _EXP_MAX, where log(1 + e^l) = l
            log_u = torch.where(logits > _EXP_MAX, logits, torch.log(u))
        ctx.save_for_backward(u, x, logits if ctx.needs_input_grad[1] else None)
        return (logits * x).sum(-1) - log_u.sum(-1)

    @staticmethod
    def backward(ctx, g):
        u, x, logits = ctx.saved_tensors
        g = g.unsqueeze(-1)
        grad_logits = u.reciprocal().add_(x).sub_(1).mul_(g) if ctx.needs_input_grad[0] else None  # (x − σ(l))·g
        grad_x = (logits * g).sum_to_size(x.shape) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


def _mean(raw: torch.Tensor, kind: str) -> torch.Tensor:
    """A Gaussian decoder's mean: the raw output, or squashed into (0, 1) by a sigmoid (AEVB's Frey Face decoder)."""
    return torch.sigmoid(raw) if kind == "sigmoid" else raw


@register("likelihood", "gaussian")
class Gaussian(Likelihood):
    """N(x; f(z), σ²) with a fixed σ; σ = 1 makes −log p = ½‖x − x̂‖² + const."""

    config_keys = frozenset({"sigma", "gaussian_mean"})

    def __init__(self, params, event_ndim, sigma: float = 1.0, mean: str = "linear"):
        super().__init__(params, event_ndim)
        self.loc, self.sigma = _mean(self.params.squeeze(-event_ndim - 1), mean), sigma
        self.dist = td.Independent(td.Normal(self.loc, sigma, validate_args=False), event_ndim)

    @classmethod
    def options(cls, cfg):
        return {"sigma": cfg.sigma, "mean": cfg.gaussian_mean}

    @classmethod
    def config_values(cls, options):
        return {k: options[o] for k, o in (("sigma", "sigma"), ("gaussian_mean", "mean")) if o in options}

    def rsample(self, sample_shape=(), generator=None):
        return self.loc + self.sigma * torch.randn(_shape(sample_shape) + self.loc.shape, generator=generator, device=self.loc.device)

    def _draw(self, shape, generator):
        return self.rsample(shape, generator)


@register("likelihood", "gaussian-learned")
class GaussianLearned(Likelihood):
    """N(x; μ(z), σ²(z)) with σ predicted per output as log σ² (the AEVB paper's Frey Face decoder)."""

    n_params = 2
    config_keys = frozenset({"gaussian_mean"})
    min_log_var = -9.0  # σ ≥ 0.011: below the 1/255 quantization step the density just spikes

    def __init__(self, params, event_ndim, mean: str = "linear"):
        super().__init__(params, event_ndim)
        axis = -event_ndim - 1
        loc, log_var = self.params.unbind(axis)  # one gradient tensor in backward, not one per select
        self.loc, self.log_var = _mean(loc, mean), log_var.clamp(min=self.min_log_var)
        self.dist = td.Independent(td.Normal(self.loc, torch.exp(0.5 * self.log_var), validate_args=False), event_ndim)

    @classmethod
    def options(cls, cfg):
        return {"mean": cfg.gaussian_mean}

    @classmethod
    def config_values(cls, options):
        return {"gaussian_mean": options["mean"]} if "mean" in options else {}

    def rsample(self, sample_shape=(), generator=None):
        eps = torch.randn(_shape(sample_shape) + self.loc.shape, generator=generator, device=self.loc.device)
        return self.loc + torch.exp(0.5 * self.log_var) * eps

    def _draw(self, shape, generator):
        return self.rsample(shape, generator)


@register("likelihood", "categorical")
class Categorical256(Likelihood):
    """Each pixel one of 256 levels; x in [0, 1] is read as level round(255·x)."""

    n_params = 256

    def __init__(self, params, event_ndim):
        super().__init__(params, event_ndim)
        self.logits = self.params.movedim(-event_ndim - 1, -1)  # (*batch, *event, 256)
        self.dist = td.Independent(td.Categorical(logits=self.logits, validate_args=False), event_ndim)

    @staticmethod
    def levels(x: torch.Tensor) -> torch.Tensor:
        """x in [0, 1] as the level index round(255·x)."""
        return (x * 255).round().long()

    def log_prob(self, x):
        return self.dist.log_prob(self.levels(x))

    @property
    def mean(self):
        """The expected level over 255, in [0, 1]."""
        p = torch.softmax(self.logits, -1)
        return p @ torch.arange(256, dtype=p.dtype, device=p.device) / 255

    def _draw(self, shape, generator):
        p = torch.softmax(self.logits, -1).reshape(-1, 256)
        n = math.prod(shape)
        levels = torch.multinomial(p, n, replacement=n > 1, generator=generator)  # (pixels, n)
        return levels.T[:n].reshape(*shape, *self.logits.shape[:-1]).float() / 255


def kl_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per latent unit: ½(σ² + μ² − 1 − log σ²)."""
    return 0.5 * (log_var.exp() + mu.pow(2) - 1 - log_var)


def _shape(sample_shape: int | tuple[int, ...] | torch.Size | None) -> torch.Size:
    """``sample_shape`` as torch.distributions takes it; an int n means (n,), None means ()."""
    if sample_shape is None:
        return torch.Size()
    return torch.Size((sample_shape,) if isinstance(sample_shape, int) else sample_shape)


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

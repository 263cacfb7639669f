"""Likelihoods p(x|z): decoders emit raw parameters shaped (*batch, P, *event), and a likelihood class turns
them into a distribution whose ``log_prob`` sums over the event; ``P`` is its ``n_params``."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributions as td
import torch.nn.functional as F

from ..registry import register
from .common import full_precision as _full_precision
from .common import sample_shape_of as _shape


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

    @classmethod
    def params_at(cls, data_mean: torch.Tensor, data_var: torch.Tensor, **options: Any) -> torch.Tensor:
        """Decoder outputs (n_params, *event) under which p(x|z) has the data's per-element mean (and, where the
        likelihood has one, variance); ``options`` as ``options(cfg)`` gives them. The output bias that
        ``model.init_output_bias`` sets."""
        raise NotImplementedError(f"the {cls.__name__} likelihood does not say which outputs give the data's mean")

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

    @classmethod
    def params_at(cls, data_mean, data_var, **options):
        return _logit(data_mean)[None]

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


def _logit(p: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """log p − log(1 − p), kept finite where the data's mean is 0 or 1 (MNIST's border pixels)."""
    return torch.logit(p.clamp(eps, 1 - eps))


def _raw_mean(mean: torch.Tensor, kind: str) -> torch.Tensor:
    """The raw output that ``_mean`` turns into ``mean``."""
    return _logit(mean) if kind == "sigmoid" else mean


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

    @classmethod
    def params_at(cls, data_mean, data_var, **options):
        return _raw_mean(data_mean, options.get("mean", "linear"))[None]

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

    @classmethod
    def params_at(cls, data_mean, data_var, **options):
        log_var = data_var.clamp(min=1e-12).log().clamp(min=cls.min_log_var)
        return torch.stack([_raw_mean(data_mean, options.get("mean", "linear")), log_var])

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

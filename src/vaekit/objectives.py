"""Training objectives: objects called as ``objective(model, x, kl_weight=..., generator=..., y=None) -> LossOutput``.

An objective asks the model only for what every model declares: ``encode`` (q(z|x)),
``decode`` (p(x|z)), ``prior`` and, for a model with several stochastic layers,
``sampled_terms``. So the ELBO, the IWAE bound and the score-function estimator train
any model, a user's too, and a user's objective registers with
``vaekit.register("objective", name)`` like these. The pure functions below them
turn per-example terms into a LossOutput.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .distributions import closed_form_kl
from .errors import VaekitError
from .registry import register


@dataclass
class LossOutput:
    """What every model's ``loss(x)`` returns; each field is a mean over the batch, in nats per example."""

    loss: torch.Tensor  # the scalar to minimize
    recon: torch.Tensor  # −E_q[log p(x|z)], or the reconstruction error of a plain autoencoder
    kl: torch.Tensor  # KL(q(z|x) ‖ p(z)); zero for models without a posterior


def negative_elbo(rec: torch.Tensor, kl: torch.Tensor, beta: float = 1.0) -> LossOutput:
    """The SGVB estimate of −ELBO (Kingma & Welling, 2013) from its per-example terms.

    ``rec`` is −log p(x|z); ``kl`` is KL(q(z|x) ‖ p(z)) in closed form (their estimator B,
    eq. 7) or its one-sample estimate log q(z|x) − log p(z) (estimator A, eq. 6). Either may
    carry L leading Monte Carlo samples, (L, B): they are averaged over.
    """
    if rec.dim() > 1:
        rec = rec.mean(0)
    if kl.dim() > 1:
        kl = kl.mean(0)
    return LossOutput((rec + beta * kl).mean(), rec.mean(), kl.mean())


def negative_iwae(rec: torch.Tensor, log_ratio: torch.Tensor) -> LossOutput:
    """−log (1/K) Σ_k p(x, z_k) / q(z_k|x) from rec = −log p(x|z_k) and log_ratio = log q(z_k|x) − log p(z_k),
    both (K, B): the importance weighted bound of Burda et al. (2015), tighter than the ELBO for K > 1;
    at K = 1 it is the ELBO with the sampled KL. ``recon`` and ``kl`` report the terms averaged over the samples."""
    bound = torch.logsumexp(-rec - log_ratio, 0) - math.log(len(rec))  # (B,)
    return LossOutput(-bound.mean(), rec.mean(), log_ratio.mean())


def score_function_surrogate(signal: torch.Tensor, log_q: torch.Tensor, baseline: torch.Tensor | float = 0.0) -> torch.Tensor:
    """A term whose gradient is the score-function (REINFORCE; Williams, 1992) estimate (f − b) ∇_φ log q(z|x):
    the learning signal f, held fixed, times the score of the sample. A baseline b that does not depend on z
    leaves it unbiased (E_q[∇ log q] = 0) and can cut its variance. Add ``s - s.detach()`` to a loss to get
    the gradient without changing the loss's value."""
    return (signal - baseline).detach() * log_q


class Objective:
    """What the trainer minimizes. Subclasses set what they need of a model and the ModelConfig keys they read."""

    needs_posterior: ClassVar[bool] = True  # a model with q(z|x) and a prior p(z): a VAE, not a plain autoencoder
    single_layer: ClassVar[bool] = False  # encode() must give the model's whole posterior (not a hierarchical VAE's)
    config_keys: ClassVar[frozenset[str]] = frozenset()  # ModelConfig fields from_config reads

    @classmethod
    def from_config(cls, cfg: Any) -> "Objective":
        """The objective a ModelConfig describes. A user's objective is rebuilt with its defaults unless it
        overrides this and ``to_config`` for settings that ModelConfig has keys for."""
        return cls()

    def to_config(self) -> dict[str, Any]:
        """The ModelConfig values that rebuild this objective (its name is written beside them)."""
        return {}

    def refusal(self, model: Any) -> str | None:
        """Why this objective cannot train ``model`` (a model or a model class), or None when it can."""
        name = model.__name__ if isinstance(model, type) else type(model).__name__
        if self.needs_posterior and not model.variational:
            return f"{type(self).__name__} needs a model with a posterior and a prior; a {name} has none"
        if self.single_layer and model.hierarchical:
            return f"{type(self).__name__} needs a one-layer posterior; a {name} has several stochastic layers"
        return None

    def __call__(self, model: Any, x: torch.Tensor, kl_weight: float = 1.0, generator: torch.Generator | None = None,
                 y: torch.Tensor | None = None) -> LossOutput:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def _samples(mc_samples: int) -> int | None:
    return None if mc_samples == 1 else mc_samples


@register("objective", "elbo")
class ELBO(Objective):
    """−ELBO = −E_q[log p(x|z)] + β·KL(q(z|x) ‖ p(z)) with L reparameterized samples of z (Kingma & Welling, 2013).

    ``kl="analytic"`` takes the KL in closed form where ``torch.distributions`` has one for the posterior and the
    prior (their estimator B; a hierarchical VAE or a prior without one uses the sampled estimate), ``"sampled"``
    takes log q(z|x) − log p(z) at the same z (estimator A).
    """

    config_keys = frozenset({"beta", "mc_samples", "kl_estimator", "estimator"})

    def __init__(self, beta: float = 1.0, mc_samples: int = 1, kl: str = "analytic"):
        if kl not in ("analytic", "sampled"):
            raise VaekitError(f"ELBO(kl={kl!r}): expected 'analytic' or 'sampled'")
        if not (isinstance(mc_samples, int) and mc_samples >= 1):
            raise VaekitError(f"ELBO(mc_samples={mc_samples!r}): expected a positive integer")
        self.beta, self.mc_samples, self.kl = float(beta), mc_samples, kl

    @classmethod
    def from_config(cls, cfg):
        if cfg.estimator == "dreg":
            raise VaekitError("model.estimator='dreg' is the iwae objective's estimator: add --objective iwae")
        if cfg.estimator != "reparameterization":
            return ScoreFunction(baseline=cfg.estimator == "score-function-baseline", beta=cfg.beta, mc_samples=cfg.mc_samples)
        return cls(cfg.beta, cfg.mc_samples, cfg.kl_estimator)

    def to_config(self):
        return {"beta": self.beta, "mc_samples": self.mc_samples, "kl_estimator": self.kl}

    def __call__(self, model, x, kl_weight=1.0, generator=None, y=None):
        n = _samples(self.mc_samples)
        if model.hierarchical:
            rec, kl = model.sampled_terms(x, n, generator, y)
            return negative_elbo(rec, kl, self.beta * kl_weight)
        q_z = model.encode(x, y)
        z = q_z.rsample(n, generator)
        rec = -model.decode(z, y).log_prob(x)  # before the KL, as in the IWAE path: autograd then sums in the same order
        kl = closed_form_kl(q_z, model.prior) if self.kl == "analytic" else None
        if kl is None:
            kl = q_z.log_prob(z) - model.prior.log_prob(z)
        return negative_elbo(rec, kl, self.beta * kl_weight)


@register("objective", "iwae")
class IWAE(Objective):
    """−log (1/K) Σ_k p(x, z_k) / q(z_k|x), the importance weighted bound of Burda et al. (2015).

    ``estimator="dreg"`` keeps the bound and the decoder's gradient but gives the encoder the doubly
    reparameterized gradient of Tucker et al. (2018): Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ, with w̃ the normalized
    weights and log q's parameters held fixed inside log w. It is unbiased for the same gradient, and its
    variance does not grow with K as the plain estimator's signal-to-noise ratio decays (Rainforth et al., 2018).
    """

    config_keys = frozenset({"iwae_k", "estimator"})

    def __init__(self, k: int = 50, estimator: str = "reparameterization"):
        if not (isinstance(k, int) and k >= 1):
            raise VaekitError(f"IWAE(k={k!r}): expected a positive integer number of importance samples")
        if estimator not in ("reparameterization", "dreg"):
            raise VaekitError(f"IWAE(estimator={estimator!r}): expected 'reparameterization' or 'dreg'")
        self.k, self.estimator = k, estimator
        self.single_layer = estimator == "dreg"  # it needs q(z|x) itself, not a hierarchy's terms

    @classmethod
    def from_config(cls, cfg):
        if cfg.estimator not in ("reparameterization", "dreg"):
            raise VaekitError(f"model.estimator={cfg.estimator!r} applies to model.objective=elbo; the iwae objective "
                              "is trained with the reparameterization gradient or dreg")
        return cls(cfg.iwae_k, cfg.estimator)

    def to_config(self):
        return {"iwae_k": self.k, "estimator": self.estimator}

    def __call__(self, model, x, kl_weight=1.0, generator=None, y=None):
        if self.estimator == "reparameterization":
            return negative_iwae(*model.sampled_terms(x, self.k, generator, y))
        q_z = model.encode(x, y)
        z = q_z.rsample(self.k, generator)  # (K, B, k), a path to the encoder
        at = z.detach().requires_grad_(torch.is_grad_enabled())
        rec = -model.decode(at, y).log_prob(x)
        log_ratio = q_z.detach().log_prob(at) - model.prior.log_prob(at)
        out = negative_iwae(rec, log_ratio)  # its gradient: the decoder's and the prior's, none to the encoder
        if not at.requires_grad:
            return out
        log_w = -rec - log_ratio
        w = torch.softmax(log_w.detach(), 0)
        dz, = torch.autograd.grad((w * w * log_w).sum(), at, retain_graph=True)
        s = (dz * z).sum() / len(x)  # gradient Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ per example, through z alone
        return LossOutput(out.loss - (s - s.detach()), out.recon, out.kl)


class ScoreFunction(ELBO):
    """−ELBO whose encoder gradient for the reconstruction term is the score-function (REINFORCE) estimate
    (log p(x|z) − b) ∇_φ log q(z|x): z carries no path to φ; the KL keeps its closed-form gradient. With
    ``baseline`` the learning signal is centred on its batch mean. The loss reported is still −ELBO."""

    single_layer = True
    config_name = "elbo"  # written as model.objective=elbo with model.estimator=score-function[-baseline]

    def __init__(self, baseline: bool = False, beta: float = 1.0, mc_samples: int = 1):
        super().__init__(beta, mc_samples, "analytic")
        self.baseline = bool(baseline)

    def to_config(self):
        return {"beta": self.beta, "mc_samples": self.mc_samples,
                "estimator": "score-function-baseline" if self.baseline else "score-function"}

    def __call__(self, model, x, kl_weight=1.0, generator=None, y=None):
        q_z = model.encode(x, y)
        z = q_z.rsample(_samples(self.mc_samples), generator).detach()
        log_px = model.decode(z, y).log_prob(x)  # (L, B) or (B,)
        baseline = log_px.detach().mean() if self.baseline else 0.0
        s = score_function_surrogate(log_px, q_z.log_prob(z), baseline)
        kl = closed_form_kl(q_z, model.prior)
        if kl is None:
            raise VaekitError(f"ScoreFunction needs a closed-form KL to {type(model.prior).__name__}; use ELBO(kl='sampled')")
        out = negative_elbo(-log_px, kl, self.beta * kl_weight)
        return LossOutput(out.loss - (s - s.detach()).mean(), out.recon, out.kl)


@register("objective", "reconstruction")
class Reconstruction(Objective):
    """−log p(x | f(g(x̃))), a plain or denoising autoencoder's loss: BCE under Bernoulli, ½‖x − x̂‖² + c under
    Gaussian; x̃ is ``model.corrupt(x)`` (x itself but for a denoising autoencoder)."""

    needs_posterior = False

    def __call__(self, model, x, kl_weight=1.0, generator=None, y=None):
        rec = -model.decode(model.encode(model.corrupt(x, generator), y).mean, y).log_prob(x).mean()
        return LossOutput(rec, rec, torch.zeros((), device=x.device))


def kl_warmup(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up: the KL weight goes 0 → 1 over ``warmup_steps`` (1 throughout when 0)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)

"""Training objectives as pure functions of distributions, and the KL weight schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch



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


def kl_warmup(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up: the KL weight goes 0 → 1 over ``warmup_steps`` (1 throughout when 0)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)

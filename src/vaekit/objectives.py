"""Training objectives as pure functions of distributions, and the KL weight schedule."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .distributions import DiagonalGaussian, Likelihood


@dataclass
class LossOutput:
    """What every model's ``loss(x)`` returns; each field is a mean over the batch, in nats per example."""

    loss: torch.Tensor  # the scalar to minimize
    recon: torch.Tensor  # −E_q[log p(x|z)], or the reconstruction error of a plain autoencoder
    kl: torch.Tensor  # KL(q(z|x) ‖ p(z)); zero for models without a posterior


def negative_elbo(p_x: Likelihood, x: torch.Tensor, q_z: DiagonalGaussian, beta: float = 1.0) -> LossOutput:
    """The SGVB estimate of −ELBO with the analytic KL (Kingma & Welling, eq. 10).

    ``p_x`` may carry L leading Monte Carlo samples: the reconstruction term is
    averaged over them.
    """
    rec = -p_x.log_prob(x)  # (L, B) or (B,)
    if rec.dim() > 1:
        rec = rec.mean(0)
    kl = q_z.kl()  # (B,)
    return LossOutput((rec + beta * kl).mean(), rec.mean(), kl.mean())


def kl_warmup(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up: the KL weight goes 0 → 1 over ``warmup_steps`` (1 throughout when 0)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)

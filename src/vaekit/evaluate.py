"""Measuring a model. For now: the loss and its terms averaged over a data split."""
from __future__ import annotations

import torch

from .data import Part

EVAL_SEED = 7919  # fixes the binarization and z draws of an evaluation, so epochs compare like with like


@torch.no_grad()
def mean_loss(model: torch.nn.Module, part: Part, batch_size: int = 1000, device: str | torch.device = "cpu",
              seed: int = EVAL_SEED) -> dict[str, float]:
    """Mean loss, reconstruction and KL per example over ``part`` (−ELBO and its terms for a VAE)."""
    was_training = model.training
    model.eval()
    g = torch.Generator(device).manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, _ in part.batches(batch_size, noise=g, device=device):
        out = model.loss(x, generator=g)
        sums += torch.stack([out.loss, out.recon, out.kl]).double() * len(x)
    model.train(was_training)
    loss, recon, kl = (sums / len(part)).tolist()
    return {"loss": loss, "recon": recon, "kl": kl}

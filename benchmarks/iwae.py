"""Importance-sampled log p(x) (IWAE bound, K = 5000) of the 784-400-20 MLP VAE over MNIST test images:
vaekit.log_likelihood against a straightforward reference (one image at a time, 5000 samples, logsumexp).

Both run in the same process on the same images and weights, taking turns. The
decoder's matmuls alone cost 2·(20·400 + 400·784)·K FLOP per image (3.2 GFLOP at
K = 5000); the bound is that over the fp32 matmul rate measured in the same round.
"""
from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F

import vaekit
from vaekit.config import ModelConfig

from throughput import matmul_gflops


@torch.no_grad()
def reference(model, x: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.empty(len(x))
    for i, xi in enumerate(x.flatten(1)):
        h = model.encoder.net(xi[None])
        mu, log_var = h.chunk(2, -1)
        std = torch.exp(0.5 * log_var)
        eps = torch.randn(k, mu.shape[-1])
        z = mu + std * eps
        logits = model.decoder.net(z)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, xi.expand(k, -1), reduction="none").sum(1)
        log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1)
        log_qz = (-0.5 * eps.pow(2) - 0.5 * math.log(2 * math.pi) - 0.5 * log_var).sum(1)
        out[i] = torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(k)
    return out


@torch.no_grad()
def ours(model, x: torch.Tensor, k: int, batch: int = 10) -> torch.Tensor:
    out = torch.empty(len(x))
    g = torch.Generator().manual_seed(0)
    for i in range(0, len(x), batch):
        out[i:i + batch] = vaekit.log_likelihood(model, x[i:i + batch], k, g)
    return out


def measure(x: torch.Tensor, k: int = 5000, rounds: int = 3, log=print) -> dict:
    """Seconds per 10,000 images for both, vaekit's speed-up and its fraction of the bound (medians of per-round ratios)."""
    torch.manual_seed(0)
    model = vaekit.build(ModelConfig(input_shape=(1, 28, 28), likelihood="bernoulli")).eval()
    flop = 2 * (20 * 400 + 400 * 784) * k * len(x)
    times: dict[str, list[float]] = {"reference": [], "vaekit": []}
    bounds = []
    for r in range(rounds):
        bounds.append(flop / (matmul_gflops() * 1e9))
        for name, fn in (("reference", reference), ("vaekit", ours)):
            t0 = time.perf_counter()
            fn(model, x, k)
            times[name].append(time.perf_counter() - t0)
        log(f"IWAE-{k}, round {r + 1}/{rounds}: bound {bounds[-1]:.2f} s, reference {times['reference'][-1]:.2f} s, "
            f"vaekit {times['vaekit'][-1]:.2f} s over {len(x)} images")
    per_10k = 10000 / len(x)
    return {"k": k, "images_timed": len(x),
            "reference_s_per_10k": statistics.median(times["reference"]) * per_10k,
            "vaekit_s_per_10k": statistics.median(times["vaekit"]) * per_10k,
            "bound_s_per_10k": statistics.median(bounds) * per_10k,
            "vaekit_over_reference": statistics.median(a / b for a, b in zip(times["reference"], times["vaekit"])),
            "vaekit_over_bound": statistics.median(a / b for a, b in zip(times["vaekit"], bounds))}

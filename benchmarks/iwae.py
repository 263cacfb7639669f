"""Importance-sampled log p(x) (IWAE bound, K = 5000) of the 784-400-20 MLP VAE over MNIST test images:
vaekit.log_likelihood against a straightforward reference (one image at a time, 5000 samples, logsumexp).

Both run in the same process on the same images and weights, taking turns, and
each figure is the median over rounds. The decoder's matmuls alone cost
2·(20·400 + 400·784)·K FLOP per image (3.2 GFLOP at K = 5000); the bound is that
over the measured fp32 matmul rate. Run:
    python benchmarks/iwae.py [--subset 200] [--rounds 3] [--k 5000]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import vaekit
from vaekit.config import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import matmul_gflops  # noqa: E402


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", type=int, default=200, help="test images (10000 for the full set)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    if (Path(args.data_dir) / "mnist").is_dir():
        ds = vaekit.load_dataset(vaekit.DataConfig(name="mnist", data_dir=args.data_dir, download=False))
        x = (ds.test.x[: args.subset].float() / 255 > 0.5).float()
    else:
        x = torch.bernoulli(torch.full((args.subset, 1, 28, 28), 0.13))
    torch.manual_seed(0)
    model = vaekit.build(ModelConfig(input_shape=(1, 28, 28), likelihood="bernoulli")).eval()
    flop = 2 * (20 * 400 + 400 * 784) * args.k * len(x)
    names = ("reference (one image at a time)", "vaekit.log_likelihood")
    times: dict[str, list[float]] = {name: [] for name in names}
    bounds = []  # seconds at the matmul rate measured in the same round: the machine's speed drifts between rounds
    for r in range(args.rounds):
        bounds.append(flop / (matmul_gflops() * 1e9))
        for name, fn in zip(names, (reference, ours)):
            t0 = time.perf_counter()
            fn(model, x, args.k)
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds}: bound {bounds[-1]:.2f} s, " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
    bound = statistics.median(bounds)
    print(f"IWAE K={args.k} over {len(x)} MNIST test images, 784-400-20 MLP VAE; decoder {flop / len(x) / 1e9:.2f} GFLOP per image; "
          f"fp32 matmul {flop / bound / 1e9:.0f} GFLOP/s -> bound {bound:.2f} s ({bound / len(x) * 10000:.0f} s for 10k images); "
          f"medians over {args.rounds} rounds, ratios taken within each round")
    print(f"{'':34} {'seconds':>8} {'s per 10k':>10} {'× reference':>12} {'of bound':>9}")
    ref = times[names[0]]
    for name, v in times.items():
        t = statistics.median(v)
        speed = statistics.median(a / b for a, b in zip(ref, v))
        share = statistics.median(b / a for a, b in zip(v, bounds))
        print(f"{name:34} {t:8.2f} {t / len(x) * 10000:10.0f} {speed:12.2f} {share:9.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

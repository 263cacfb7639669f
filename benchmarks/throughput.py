"""Training throughput of the 784-400-20 MLP VAE: vaekit's trainer vs the pytorch/examples reference loop.

The reference is written the way pytorch/examples/vae/main.py writes it: a
DataLoader over a TensorDataset, an eager model, BCE + KLD summed over the batch,
Adam. Both train on the same images in the same process, taking turns one epoch
each, so every ratio is taken within a round on the machine as it was then.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

import vaekit

# The matmul FLOPs one training sample needs: forward 2·m·n per layer, backward the same again for the weight
# gradient and, except at the first layer (whose input is data), again for the input gradient.
LAYERS = [(784, 400), (400, 40), (20, 400), (400, 784)]
FLOP_PER_SAMPLE = sum(2 * m * n * (2 if i == 0 else 3) for i, (m, n) in enumerate(LAYERS))


class ReferenceVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def reference_epoch(x: torch.Tensor, batch_size: int) -> float:
    """Samples/s of one epoch of the pytorch/examples loop."""
    model = ReferenceVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch_size, shuffle=True)
    t0 = time.perf_counter()
    for (data,) in loader:
        opt.zero_grad()
        recon, mu, logvar = model(data)
        bce = F.binary_cross_entropy(recon, data.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        (bce + kld).backward()
        opt.step()
    return len(x) / (time.perf_counter() - t0)


def one_epoch(data: str, data_dir: str | None, batch_size: int) -> list[str]:
    """The config assignments of one epoch of the 784-400-20 MLP VAE on un-binarized data, as the reference trains."""
    sets = {"data.name": data, "data.binarize": "none", "data.download": False, "data.data_dir": data_dir,
            "train.epochs": 1, "train.batch_size": batch_size, "train.tensorboard": False, "model.latent_dim": 20}
    return [f"{k}={json.dumps(v)}" for k, v in sets.items()]


def vaekit_epoch(data: str, data_dir: str | None, batch_size: int, precision: str = "fp32") -> float:
    """Samples/s of one epoch of vaekit.fit, as its metrics record it (validation excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = vaekit.fit(vaekit.Config(out=tmp).override(one_epoch(data, data_dir, batch_size) + [f"train.precision={precision}"]),
                         progress=False)
    return run.history[0]["samples_per_s"]


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The machine's fp32 matmul rate now: the median of ``repeats`` n×n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def measure(x: torch.Tensor, source: str, data_dir: str | None, batch_sizes=(128, 1024), rounds: int = 3, log=print) -> dict:
    """Per batch size: samples/s of both loops (vaekit also with ``--precision bf16``), vaekit's ratios to the
    reference and the fractions of the fp32 bound."""
    rows = {b: {"reference": [], "vaekit": [], "vaekit_bf16": [], "bound": []} for b in batch_sizes}
    for r in range(rounds):
        for b in batch_sizes:
            rows[b]["bound"].append(matmul_gflops() * 1e9 / FLOP_PER_SAMPLE)
            rows[b]["reference"].append(reference_epoch(x, b))
            rows[b]["vaekit"].append(vaekit_epoch(source, data_dir, b))
            rows[b]["vaekit_bf16"].append(vaekit_epoch(source, data_dir, b, "bf16"))
            log(f"training, round {r + 1}/{rounds}, batch {b}: reference {rows[b]['reference'][-1]:,.0f}/s, "
                f"vaekit {rows[b]['vaekit'][-1]:,.0f}/s, bf16 {rows[b]['vaekit_bf16'][-1]:,.0f}/s, bound {rows[b]['bound'][-1]:,.0f}/s")
    out = {}
    for b, v in rows.items():
        out[b] = {"reference_samples_per_s": statistics.median(v["reference"]),
                  "vaekit_samples_per_s": statistics.median(v["vaekit"]),
                  "bound_samples_per_s": statistics.median(v["bound"]),
                  "vaekit_over_reference": statistics.median(a / c for a, c in zip(v["vaekit"], v["reference"])),
                  "vaekit_of_bound": statistics.median(a / c for a, c in zip(v["vaekit"], v["bound"])),
                  "vaekit_bf16_samples_per_s": statistics.median(v["vaekit_bf16"]),
                  "vaekit_bf16_over_reference": statistics.median(a / c for a, c in zip(v["vaekit_bf16"], v["reference"])),
                  "vaekit_bf16_of_bound": statistics.median(a / c for a, c in zip(v["vaekit_bf16"], v["bound"])),
                  "reference_of_bound": statistics.median(a / c for a, c in zip(v["reference"], v["bound"]))}
    return out

"""Training throughput of the 784-400-20 MLP VAE at batch 128: vaekit's trainer vs a reference loop.

The reference is written the way pytorch/examples/vae/main.py writes it: a
DataLoader over a TensorDataset, an eager model, BCE + KLD summed over the batch,
Adam. Both train on the same MNIST images (or random images of its shape when
MNIST is not at hand) in the same process. The machine is shared and noisy, so
the loops take turns, one epoch each, for several rounds, and every figure is a
median over rounds. Run:  python benchmarks/throughput.py [--rounds 5] [--data-dir ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import vaekit

FLOP_PER_SAMPLE = 3 * 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)  # forward + backward ≈ 3× forward matmuls


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


def vaekit_epoch(data: str, data_dir: str | None, batch_size: int, binarize: str) -> float:
    """Samples/s of one epoch of vaekit.fit, as its metrics record it (validation excluded)."""
    sets = {"data.name": data, "data.binarize": binarize, "data.download": False, "data.data_dir": data_dir,
            "train.epochs": 1, "train.batch_size": batch_size, "train.tensorboard": False, "model.latent_dim": 20}
    with tempfile.TemporaryDirectory() as tmp:
        run = vaekit.fit(vaekit.Config(out=tmp).override([f"{k}={json.dumps(v)}" for k, v in sets.items()]))
    return run.history[0]["samples_per_s"]


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()

    mnist = Path(args.data_dir) / "mnist" / "train-images-idx3-ubyte.gz"
    if mnist.exists():
        source, data_dir = "mnist", args.data_dir
        ds = vaekit.load_dataset(vaekit.DataConfig(name="mnist", data_dir=data_dir, download=False))
        x = ds.train.x.float() / 255
    else:  # no MNIST here: random images of its size and count cost the same
        source, data_dir = None, None
        tmp = Path(tempfile.mkdtemp()) / "random-mnist.npy"
        import numpy as np

        np.save(tmp, np.random.default_rng(0).integers(0, 256, (60000, 28, 28), dtype=np.uint8))
        source = str(tmp)
        x = torch.from_numpy(np.load(tmp)).float().div(255)[:54000]
    torch.manual_seed(0)
    rows = {"reference loop (pytorch/examples)": [], "vaekit trainer": [], "vaekit trainer, dynamic binarization": [], "matmul GFLOP/s": []}
    for r in range(args.rounds):
        rows["matmul GFLOP/s"].append(matmul_gflops())
        ref = reference_epoch(x, args.batch_size)
        rows["reference loop (pytorch/examples)"].append(ref)
        rows["vaekit trainer"].append(vaekit_epoch(source, data_dir, args.batch_size, "none"))
        rows["vaekit trainer, dynamic binarization"].append(vaekit_epoch(source, data_dir, args.batch_size, "dynamic"))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rows.items()), file=sys.stderr)
    gflops = statistics.median(rows.pop("matmul GFLOP/s"))
    bound = gflops * 1e9 / FLOP_PER_SAMPLE
    refs = rows["reference loop (pytorch/examples)"]
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}, fp32 matmul {gflops:.0f} GFLOP/s (2048², median)")
    print(f"model: 784-400-20-400-784 MLP VAE, batch {args.batch_size}, {FLOP_PER_SAMPLE / 1e6:.2f} MFLOP per training sample; "
          f"bound {bound:,.0f} samples/s; medians of {args.rounds} interleaved epochs")
    print(f"{'':38} {'samples/s':>10} {'× reference':>12} {'of bound':>9}")
    for name, v in rows.items():
        ratio = statistics.median(a / b for a, b in zip(v, refs))  # per round: both saw the same machine load
        print(f"{name:38} {statistics.median(v):10,.0f} {ratio:12.2f} {statistics.median(v) / bound:9.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

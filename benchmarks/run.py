"""All of vaekit's performance figures, measured in one run against references measured in the same run.

    python benchmarks/run.py [--rounds 3] [--only training,iwae,memory,ddp] [--out benchmarks/results]

- training: samples/s of the 784-400-20 MLP VAE at batch 128 and 1024, vaekit's trainer (fp32, and bf16
  autocast) against the pytorch/examples loop, and as fractions of the bound set by the measured fp32 matmul rate;
- iwae: IWAE-5000 log p(x) over 10k images (timed on a subset), against a one-image-at-a-time
  reference and against its matmul bound;
- memory: peak RSS training from a streamed .npy of 1× and 10× MNIST's size;
- ddp: 2-process torchrun (DDP, gloo) against 1 process on the same cores;
- denormal: samples/s in the 4th epoch with and without ``train.flush_denormal``.

Machines are noisy: figures are medians over rounds and ratios are taken within a round. Writes
results.json and results.md (the table in the README) to --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp  # noqa: E402
import denormal  # noqa: E402
import iwae  # noqa: E402
import memory  # noqa: E402
import throughput  # noqa: E402

import vaekit  # noqa: E402

PARTS = ("training", "iwae", "memory", "ddp", "denormal")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mnist(data_dir: str) -> tuple[torch.Tensor, str, str | None]:
    """MNIST's training images as floats, and how vaekit.fit names them; random images of its size without it."""
    if (Path(data_dir) / "mnist" / "train-images-idx3-ubyte.gz").exists():
        ds = vaekit.load_dataset(vaekit.DataConfig(name="mnist", data_dir=data_dir, download=False))
        return ds.train.x.float() / 255, "mnist", data_dir
    path = Path(tempfile.mkdtemp()) / "random-mnist.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (60000, 28, 28), dtype=np.uint8))
    ds = vaekit.load_dataset(vaekit.DataConfig(name=str(path)))
    return ds.train.x.float() / 255, str(path), None


def table(r: dict) -> str:
    rows = ["| figure | vaekit | reference | ratio | target |", "| --- | ---: | ---: | ---: | --- |"]
    for b, t in r.get("training", {}).items():
        rows.append(f"| training, batch {b} (samples/s) | {t['vaekit_samples_per_s']:,.0f} | {t['reference_samples_per_s']:,.0f} "
                    f"| {t['vaekit_over_reference']:.2f}× | {'≥ 2×' if int(b) == 128 else ''} |")
        rows.append(f"| training, batch {b}: of the matmul bound ({t['bound_samples_per_s']:,.0f}/s) | {t['vaekit_of_bound']:.0%} "
                    f"| {t['reference_of_bound']:.0%} | | {'≥ 75 %' if int(b) == 1024 else '≈ 70 %'} |")
        rows.append(f"| training, batch {b}, `--precision bf16` (samples/s; of the fp32 bound) | {t['vaekit_bf16_samples_per_s']:,.0f} "
                    f"({t['vaekit_bf16_of_bound']:.0%}) | {t['reference_samples_per_s']:,.0f} | {t['vaekit_bf16_over_reference']:.2f}× | |")
    if "iwae" in r:
        t = r["iwae"]
        rows.append(f"| IWAE-{t['k']} over 10k images (s) | {t['vaekit_s_per_10k']:.0f} | {t['reference_s_per_10k']:.0f} "
                    f"| {t['vaekit_over_reference']:.2f}× faster | |")
        rows.append(f"| IWAE-{t['k']}: time over its matmul bound ({t['bound_s_per_10k']:.0f} s) | {t['vaekit_over_bound']:.2f}× | "
                    f"| | ≤ 1.2× |")
    if "memory" in r:
        m = r["memory"]
        small, large = (m[k] for k in m if k != "growth")
        rows.append(f"| streamed training, peak RSS (MB) at {small['file_mb']:.0f} MB → {large['file_mb']:.0f} MB of data "
                    f"| {small['peak_rss_mb']:.0f} → {large['peak_rss_mb']:.0f} | | {m['growth']:.2f}× | ≤ 1.2× |")
    for b, t in r.get("ddp", {}).items():
        rows.append(f"| 2-process DDP vs 1 process, batch {b} (samples/s) | {t['two_processes_samples_per_s']:,.0f} "
                    f"| {t['one_process_samples_per_s']:,.0f} | {t['two_over_one']:.2f}× | |")
    if "denormal" in r:
        d = r["denormal"]
        rows.append(f"| training, batch 128, epoch {d['epochs']} (samples/s): denormals flushed vs kept | "
                    f"{d['flush_true']['last_epoch_samples_per_s']:,.0f} | {d['flush_false']['last_epoch_samples_per_s']:,.0f} "
                    f"| {d['last_epoch_ratio']:.2f}× | |")
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    ap.add_argument("--iwae-images", type=int, default=100, help="test images timed for IWAE (scaled to 10k)")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"--only: unknown part {unknown[0]!r}; expected some of {', '.join(PARTS)}")
    x, source, data_dir = mnist(args.data_dir)
    r: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
                           "torch": torch.__version__, "data": source,
                           "matmul_gflops": throughput.matmul_gflops(), "cuda": torch.cuda.is_available()}}
    if "training" in parts:
        r["training"] = throughput.measure(x, source, data_dir, rounds=args.rounds, log=log)
    if "iwae" in parts:
        r["iwae"] = iwae.measure((x[-args.iwae_images:] > 0.5).float().view(-1, 1, 28, 28), rounds=args.rounds, log=log)
    if "memory" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            r["memory"] = memory.measure(Path(tmp), log=log)
    if "ddp" in parts:
        r["ddp"] = ddp.measure(source, data_dir, log=log)
    if "denormal" in parts:
        r["denormal"] = denormal.measure(str(Path(__file__).resolve().parent), source, data_dir, rounds=args.rounds, log=log)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    md = table(json.loads(json.dumps(r)))  # keys as JSON gives them back
    (out / "results.md").write_text(md)
    m = r["machine"]
    print(f"{m['cpu']}, {m['cores']} threads, torch {m['torch']}, fp32 matmul {m['matmul_gflops']:.0f} GFLOP/s; "
          f"model 784-400-20 MLP VAE, {throughput.FLOP_PER_SAMPLE / 1e6:.2f} MFLOP per training sample\n")
    print(md)
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

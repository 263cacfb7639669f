"""Quality per time on MNIST: test log p(x) reached by a recipe in a wall-clock training budget.

    python benchmarks/likelihood.py [--minutes 10] [--recipes fast-mnist,reference,vamp,iaf] [--k 5000]
                                    [--test-rows 10000] [--data-dir ../shared/data] [--out benchmarks/results/likelihood]
                                    [--keep DIR]

Each recipe trains through ``vaekit.fit`` for ``--minutes`` of wall-clock time (``train.time_budget``), then its
log p(x) is importance sampled with K = ``--k`` on the first ``--test-rows`` test images, binarized once with a
fixed seed, so every recipe is measured on the same images and the differences are paired. The reference is
today's default recipe for the same network (constant lr 1e-3, Adam ε = 1e-8, PyTorch's output bias), measured
in the same run (without it, the first recipe listed is the base of the paired differences). ``--keep DIR`` keeps
the trained runs in DIR (``vaekit eval DIR/NAME`` then measures them on every test image). Recipes:

- fast-mnist: the preset (784-200-200-50 tanh, batch 100, cosine 1e-3 → 1e-5, ε = 1e-4, output bias from the
  pixel means);
- reference: the same network and batch with the constant rate;
- vamp: fast-mnist with the VampPrior (K = 500 pseudo-inputs);
- iaf: fast-mnist with an IAF posterior of 4 steps;
- bf16: fast-mnist with its products in bfloat16 (``--precision bf16``);
- high-lr: fast-mnist from twice the learning rate (2e-3).

Prints a table (log p(x) ± s.e., ELBO, epochs, training and evaluation minutes, difference to the base ± its
paired s.e.) and writes likelihood.json and likelihood.md to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import vaekit
from vaekit.data.parts import materialize
from vaekit.evaluation import log_likelihood
from vaekit.presets import preset

RECIPES = {
    "fast-mnist": [],
    "reference": ["train.schedule=\"constant\"", "train.eps=1e-8", "model.init_output_bias=false"],
    "vamp": ["model.prior=\"vamp\"", "model.prior_components=500"],
    "iaf": ["model.posterior=\"iaf\"", "model.flow_steps=4"],
    "bf16": ["train.precision=\"bf16\""],
    "high-lr": ["train.lr=2e-3"],
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def per_image(model, x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x), ELBO) per image, the same draws for every model."""
    g = torch.Generator().manual_seed(seed)
    ll, elbo = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), 10):
            xb = x[i:i + 10]
            ll.append(log_likelihood(model, xb, k, g).double())
            rec, kl = model.elbo_terms(xb, g)
            elbo.append(-(rec + kl).double())
    return torch.cat(ll), torch.cat(elbo)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--recipes", default="fast-mnist,reference")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--test-rows", type=int, default=10000)
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "likelihood"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="keep the trained runs in this folder")
    args = p.parse_args()
    recipes = [r.strip() for r in args.recipes.split(",")]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"--recipes: unknown {unknown[0]!r}; expected some of {', '.join(RECIPES)}")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = None
    results: dict[str, dict] = {}
    values: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        for name in recipes:
            sets = preset("fast-mnist") + RECIPES[name] + [
                f"train.time_budget={args.minutes * 60}", f"train.seed={args.seed}", "train.tensorboard=false",
                f"data.data_dir={json.dumps(args.data_dir)}", "data.download=false"]
            log(f"{name}: training for {args.minutes:g} min")
            t0 = time.perf_counter()
            run = vaekit.fit(vaekit.Config(out=str(Path(tmp) / name)).override(sets), progress=False)
            wall = time.perf_counter() - t0
            if test is None:
                test, _ = materialize(run.data.test, args.test_rows, "cpu", 7919)
            log(f"{name}: {len(run.history)} epochs in {wall / 60:.1f} min; evaluating {len(test)} images at K = {args.k}")
            t0 = time.perf_counter()
            ll, elbo = per_image(run.model, test, args.k, args.seed + 1)
            values[name] = ll
            n = len(ll)
            results[name] = {"log_px": ll.mean().item(), "log_px_se": (ll.std() / math.sqrt(n)).item(),
                             "elbo": elbo.mean().item(), "elbo_se": (elbo.std() / math.sqrt(n)).item(),
                             "epochs": len(run.history), "train_minutes": wall / 60,
                             "eval_minutes": (time.perf_counter() - t0) / 60,
                             "final_lr": run.history[-1]["lr"] if run.history else None}
            log(f"{name}: log p(x) {results[name]['log_px']:.2f} ± {results[name]['log_px_se']:.2f}")
    base = "reference" if "reference" in values else recipes[0]
    for name, r in results.items():
        if name != base:
            d = values[name] - values[base]
            r["minus_base"], r["minus_base_se"] = d.mean().item(), (d.std() / math.sqrt(len(d))).item()
    lines = [f"Test log p(x) on the first {len(test)} MNIST test images (dynamically binarized once), K = {args.k}, "
             f"after {args.minutes:g} minutes of training; {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}.",
             "", f"| recipe | log p(x) | ELBO | epochs | training min | eval min | − {base} (paired) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        diff = f"{r['minus_base']:+.2f} ± {r['minus_base_se']:.2f}" if "minus_base" in r else ""
        lines.append(f"| {name} | {r['log_px']:.2f} ± {r['log_px_se']:.2f} | {r['elbo']:.2f} ± {r['elbo_se']:.2f} | "
                     f"{r['epochs']} | {r['train_minutes']:.1f} | {r['eval_minutes']:.1f} | {diff} |")
    lines.append("")
    lines.append(f"wall-clock time of the benchmark: {(time.perf_counter() - start) / 60:.1f} min")
    text = "\n".join(lines) + "\n"
    (out / "likelihood.md").write_text(text)
    (out / "likelihood.json").write_text(json.dumps({"minutes": args.minutes, "k": args.k, "test_rows": len(test), "base": base,
                                                     "results": results}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kingma & Welling's Figure 3: AEVB, wake-sleep and Monte-Carlo EM, test log p(x) against training samples."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..presets import preset
from ..data.parts import materialize
from ..errors import VaekitError
from ..plots import panels, save_figure
from .common import across_seeds, pick_step_size, pilot_steps, write_outputs

def aevb_fig3(out: str | Path, dataset: str = "mnist", budget: int = 1_000_000, train_sizes: tuple[int, ...] = (1000, 50000),
              checkpoints: int = 6, data_dir: str | None = None, seed: int = 0, test_rows: int = 100, seeds: int = 1) -> dict[str, Any]:
    """Kingma & Welling's Figure 3: N_z = 3, 100 hidden units, trained on the first 1,000 and 50,000 training
    images with AEVB, wake-sleep and (on sets of at most 1,000 points, as in the paper) Monte-Carlo EM; the
    marginal log-likelihood of ``test_rows`` test images, estimated the same way for all three
    (``baselines.hmc_log_likelihood``), against the number of training samples evaluated. With ``seeds`` > 1
    every run is repeated from seeds ``seed``, ``seed`` + 1, ..., and the figure and summary show the means."""
    from ..baselines import MCEMStep, WakeSleepStep, hmc_log_likelihood
    from ..models import build
    from ..runs import prepare
    from ..train import fit

    if budget < 100 * checkpoints:
        raise VaekitError(f"--budget {budget}: at least 100 samples per checkpoint ({100 * checkpoints}) are needed")
    if seeds < 1:
        raise VaekitError(f"--seeds {seeds}: expected at least 1")
    sets = preset("aevb-mnist") + [f"data.name={json.dumps(dataset)}", "model.latent_dim=3", "model.hidden=[100]",
                                   "train.tensorboard=false", f"train.seed={seed}"]
    if data_dir is not None:
        sets.append(f"data.data_dir={json.dumps(data_dir)}")
    resolved, data = prepare(Config().override(sets))
    x_all, _ = materialize(data.train, max(train_sizes), "cpu", seed)
    x_test, _ = materialize(data.test, test_rows, "cpu", seed)
    last = budget // 100
    steps = sorted({max(1, round(last ** ((i + 1) / checkpoints))) for i in range(checkpoints)})
    pilot = pilot_steps(last)
    points: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []  # per test image at the last checkpoint, for paired differences between methods
    chosen: list[dict[str, Any]] = []

    def train(method: str, xs: torch.Tensor, lr: float, stops: list[int], record, run_seed: int) -> torch.nn.Module:
        """One method through the one trainer from the same initialization: Adagrad at step size ``lr``, minibatches
        of 100 from each epoch's permutation of the N points, ``record``-ing at ``stops``. The N(0, I) prior on the
        weights enters the per-example objective with weight 1/N. Monte-Carlo EM keeps a chain per point, so it is
        given the rows' indices as labels."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run_seed)
            model = build(resolved.model)
        step = {"AEVB": None, "wake-sleep": WakeSleepStep, "MCEM": MCEMStep}[method]

        def at_stops(trainer) -> None:
            if trainer.state.step in stops:
                record(trainer.state.step, trainer.model, trainer.step if method == "MCEM" else None)

        train_cfg = {**asdict(resolved.train), "lr": lr, "weight_decay": 1 / len(xs), "max_steps": stops[-1], "epochs": 10**9,
                     "seed": run_seed}
        fit(model, (xs, torch.arange(len(xs))), val=xs[:100], progress=False, step=step, hooks={"on_step": at_stops}, **train_cfg)
        return model

    seed_list = list(range(seed, seed + seeds))
    for run_seed in seed_list:
        for n in train_sizes:
            xs = x_all[:n]
            for method in ("AEVB", "wake-sleep", "MCEM") if n <= 1000 else ("AEVB", "wake-sleep"):
                # every method is scored by what the figure plots: log p(x), here of 100 training images
                lr, scores = pick_step_size(lambda lr: train(method, xs, lr, [pilot], lambda *_: None, run_seed),
                                             lambda model: hmc_log_likelihood(model, xs[:100], k=500, hmc_steps=40,
                                                                              generator=torch.Generator().manual_seed(run_seed)).mean().item())
                chosen.append({"train_size": len(xs), "method": method, "seed": run_seed, "lr": lr, "weight_decay": 1 / len(xs),
                               "pilot_steps": pilot, "pilot_train_log_px": scores})
                last_ll: list[torch.Tensor] = []

                def record(step, model, mcem, n=len(xs), method=method, last_ll=last_ll, run_seed=run_seed):
                    ll = hmc_log_likelihood(model, x_test, k=500, hmc_steps=40, generator=torch.Generator().manual_seed(run_seed + step))
                    point = {"train_size": n, "method": method, "seed": run_seed, "step": step, "samples": step * 100,
                             "test_log_px": ll.mean().item(), "test_log_px_se": (ll.std() / len(ll) ** 0.5).item()}
                    if mcem is not None:  # Monte-Carlo EM's E-step: its acceptance rate so far and its tuned step size
                        point.update(hmc_acceptance=mcem.acceptance, hmc_step_size=mcem.step_size)
                    points.append(point)
                    last_ll[:] = [ll]

                train(method, xs, lr, steps, record, run_seed)
                final.append({"train_size": len(xs), "method": method, "seed": run_seed, "log_px": last_ll[0].tolist()})
    result = {"experiment": "aevb-fig3", "dataset": dataset, "budget": budget, "train_sizes": [min(n, len(x_all)) for n in train_sizes],
              "test_rows": len(x_test), "seeds": seed_list, "points": points, "final": final, "step_sizes": chosen}
    return write_outputs(Path(out), "fig3", result, points, lambda path: _plot_fig3(result, path), _summary_fig3)


def _fig3_means(points: list[dict]) -> list[dict]:
    """Figure 3's points averaged over seeds, one per training set, method and checkpoint. The error combines
    the test images' (the same images for every seed, so it does not shrink with seeds) and the seeds'."""
    means = []
    for ps in across_seeds(points, "train_size", "method", "step"):
        v = torch.tensor([p["test_log_px"] for p in ps], dtype=torch.float64)
        images = sum(p["test_log_px_se"] for p in ps) / len(ps)
        between = (v.std() / len(v) ** 0.5).item() if len(v) > 1 else 0.0
        means.append({**ps[0], "test_log_px": v.mean().item(), "test_log_px_se": math.hypot(images, between), "seeds": len(ps)})
    return means


def _plot_fig3(r: dict, path: Path) -> None:
    sizes = r["train_sizes"]
    r = {**r, "points": _fig3_means(r["points"])}
    fig, axes = panels(len(sizes), 4.5, 3.6)
    for ax, n in zip(axes, sizes):
        for method, colour in (("AEVB", "tab:red"), ("wake-sleep", "tab:green"), ("MCEM", "tab:blue")):
            pts = [p for p in r["points"] if p["train_size"] == n and p["method"] == method]
            if pts:
                ax.errorbar([p["samples"] for p in pts], [p["test_log_px"] for p in pts], [p["test_log_px_se"] for p in pts],
                            fmt="o-", capsize=3, color=colour, label=f"{method} (± s.e.)")
        ax.set_xscale("log")
        ax.set_title(f"N_train = {n:,}, N_z = 3" + (f", mean of {len(r['seeds'])} seeds" if len(r.get("seeds", [])) > 1 else ""))
        ax.set_xlabel("training samples evaluated")
    axes[0].set_ylabel("test log p(x) per example (nats)")
    axes[0].legend()
    save_figure(fig, path)


def _paired(per_image: dict[tuple, list[torch.Tensor]], n: int, a: str, b: str) -> tuple[float, float, list[float]]:
    """Method a − method b on the same test images at the last checkpoint: the mean over seeds and images, its
    standard error (the images' and, with several seeds, the seeds' combined) and each seed's mean difference."""
    d = torch.stack(per_image[(n, a)]) - torch.stack(per_image[(n, b)])  # (seeds, images)
    images = (d.mean(0).std() / d.shape[1] ** 0.5).item()
    per_seed = d.mean(1)
    between = (per_seed.std() / len(per_seed) ** 0.5).item() if len(per_seed) > 1 else 0.0
    return d.mean().item(), math.hypot(images, between), per_seed.tolist()


def _summary_fig3(r: dict) -> str:
    seeds = r.get("seeds", [0])
    over = (f"checkpoint, the mean over seeds {', '.join(map(str, seeds))} (± combines the test images' and the seeds' variation):"
            if len(seeds) > 1 else "checkpoint:")
    lines = [f"# AEVB, wake-sleep and Monte-Carlo EM ({r['dataset']}), Kingma & Welling (2013) Figure 3", "",
             f"N_z = 3, 100 hidden units, weight decay 1/N (the N(0, I) prior on the weights, N the training set's size); "
             f"{r['budget']:,} training samples per run (the paper: 10^8); log p(x) per example "
             f"± standard error on {r['test_rows']} test images (HMC-fitted importance sampling, K = 500) at the last {over}",
             "", "| training set | AEVB | wake-sleep | MCEM |", "|---|---|---|---|"]
    per_image: dict[tuple, list[torch.Tensor]] = {}
    for f in r["final"]:
        per_image.setdefault((f["train_size"], f["method"]), []).append(torch.tensor(f["log_px"]))
    means = _fig3_means(r["points"])
    for n in r["train_sizes"]:
        cell = {m: next(f"{p['test_log_px']:.2f} ± {p['test_log_px_se']:.2f}" for p in reversed(means)
                        if p["train_size"] == n and p["method"] == m) if (n, m) in per_image else "—"
                for m in ("AEVB", "wake-sleep", "MCEM")}
        lines.append(f"| {n:,} | {cell['AEVB']} | {cell['wake-sleep']} | {cell['MCEM']} |")

    def verdict(diff: float, se: float) -> str:
        return "yes" if diff > 2 * se else "within 2 s.e." if diff > -2 * se else "no"

    def each_seed(values: list[float]) -> str:
        return f" (by seed: {', '.join(f'{v:+.2f}' for v in values)})" if len(values) > 1 else ""

    small = [n for n in r["train_sizes"] if (n, "MCEM") in per_image]
    picked = "; ".join(f"{c['method']} on {c['train_size']:,}" + (f" (seed {c['seed']})" if len(seeds) > 1 else "") + f": {c['lr']}"
                       for c in r["step_sizes"])
    lines += ["", f"Adagrad step sizes, chosen from {{0.01, 0.02, 0.1}} by log p(x) of 100 training images after "
              f"{r['step_sizes'][0]['pilot_steps']} iterations, as in the paper: {picked}."]
    for n in small:
        ends = [p for p in r["points"] if p["train_size"] == n and p["method"] == "MCEM" and p["step"] == r["budget"] // 100]
        lines += ["", f"Monte-Carlo EM's E-step on {n:,} points, as the paper's: one HMC transition of 10 leapfrog steps per "
                  "minibatch with its step size tuned towards 90 % acceptance, then 5 weight updates; acceptance over the run "
                  f"{sum(p['hmc_acceptance'] for p in ends) / len(ends):.2f}, final step size "
                  f"{', '.join(format(p['hmc_step_size'], '.3f') for p in ends)}."]
    lines += ["", "The paper's findings beside this run (differences paired over the same test images):", "",
              "| the paper (section 5, Figure 3) | this run | holds |", "|---|---|---|"]
    for n in r["train_sizes"]:
        diff, se, by_seed = _paired(per_image, n, "AEVB", "wake-sleep")
        lines.append(f"| AEVB's marginal likelihood above wake-sleep's | AEVB − wake-sleep on {n:,} points: {diff:+.2f} ± {se:.2f} "
                     f"nats{each_seed(by_seed)} | {verdict(diff, se)} |")
    where = f"run on the {', '.join(f'{n:,}' for n in small)}-point set only" if small else "not run: no set of ≤ 1,000 points"
    lines.append(f"| Monte-Carlo EM keeps a chain per training point and cannot be applied efficiently to all of MNIST | {where} | yes |")
    for n in small:
        diff, se, by_seed = _paired(per_image, n, "MCEM", "AEVB")
        lines.append(f"| Monte-Carlo EM competitive on the small set | MCEM − AEVB on {n:,} points: {diff:+.2f} ± {se:.2f} nats"
                     f"{each_seed(by_seed)} | {'yes' if diff > -10 else 'no'} |")
    for n in small:  # the last checkpoint is not always the best one: say where Monte-Carlo EM peaked
        pts = [p for p in means if p["train_size"] == n and p["method"] == "MCEM"]
        best = max(pts, key=lambda p: p["test_log_px"])
        if best is not pts[-1]:
            lines += ["", f"Monte-Carlo EM on {n:,} points peaked at {best['test_log_px']:.2f} after {best['samples']:,} samples "
                      f"and ended at {pts[-1]['test_log_px']:.2f}: it overfits the training points."]
    lines += ["", "The paper's curves are drawn over 10^8 samples.", ""]
    return "\n".join(lines)

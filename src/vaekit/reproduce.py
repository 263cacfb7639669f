"""The experiments of Auto-Encoding Variational Bayes (Kingma & Welling, 2013), rerun with one call each.

Each writes its raw numbers (JSON and CSV), its figure (PNG) and a short markdown summary into
its output folder. ``budget`` is the number of training samples to evaluate, so a CPU run can
take minutes and a full run the paper's 10⁸.
"""
from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoint as ckpt
from .config import Config, preset
from .errors import VaekitError
from .data.parts import materialize
from .evaluation import encoder_gradient_variance
from .plots import panels, save_figure

ESTIMATORS = ("reparameterization", "score-function", "score-function-baseline")


def grad_variance(out: str | Path, dataset: str = "mnist", budget: int = 600_000, checkpoints: int = 6, draws: int = 50,
                  data_dir: str | None = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Train a VAE with the reparameterization trick and, at ``checkpoints`` points spread over ``budget``
    training samples, measure the variance of the encoder's minibatch gradient under each estimator from
    ``draws`` draws of z on one fixed minibatch of 100 training images."""
    from .runs import prepare
    from .train import fit

    if budget < 100 * checkpoints:
        raise VaekitError(f"--budget {budget}: at least 100 samples per checkpoint ({100 * checkpoints}) are needed")
    out = Path(out)
    sets = {"data.name": dataset, "model.hidden": [500], "model.activation": "tanh", "model.latent_dim": 20,
            "train.batch_size": 100, "train.tensorboard": False, "train.epochs": 10**6, "train.seed": seed}
    if data_dir is not None:
        sets["data.data_dir"] = data_dir
    config = Config(out=str(out / "vae")).override([f"{k}={json.dumps(v)}" for k, v in sets.items()])
    resolved, data = prepare(config)
    x, _ = materialize(data.train, 100, "cpu", seed)
    rows = []
    steps = [max(1, round(budget / 100 * (i + 1) / checkpoints)) for i in range(checkpoints)]
    for i, step in enumerate(steps):
        run = fit(Config.from_dict({**config.to_dict(), "train": {**config.to_dict()["train"], "max_steps": step}}),
                  resume=i > 0, progress=progress)
        model = run.model.train()
        g = torch.Generator().manual_seed(seed + i)
        v = {e: encoder_gradient_variance(model, x, e, draws, g)["mean_variance"] for e in ESTIMATORS}
        rows.append({"step": step, "samples": step * 100, **{f"variance_{e}": v[e] for e in ESTIMATORS},
                     "ratio_score_function": v["score-function"] / v["reparameterization"],
                     "ratio_score_function_baseline": v["score-function-baseline"] / v["reparameterization"]})
    result = {"experiment": "grad-variance", "dataset": dataset, "budget": budget, "draws": draws,
              "model": "MLP 500 tanh, 20 latent units, Bernoulli, Adam 1e-3, batch 100", "rows": rows,
              "data_shape": list(resolved.model.input_shape)}
    return _write(out, "grad_variance", result, rows, lambda path: _plot(rows, path), _summary)


def _write(out: Path, name: str, result: dict, rows: list[dict], plot, summary) -> dict[str, Any]:
    """What every reproduction leaves: raw numbers as JSON and CSV, the figure, a markdown summary."""
    ckpt.write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
    ckpt.write_text(out / f"{name}.csv", _csv(rows))
    plot(out / f"{name}.png")
    ckpt.write_text(out / "summary.md", summary(result))
    return result


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))  # a column for every field any row has
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _plot(rows: list[dict], path: Path) -> None:
    fig, (ax,) = panels(1, 6.5, 4)
    samples = [r["samples"] for r in rows]
    for e, style in zip(ESTIMATORS, ("o-", "s--", "^:")):
        ax.plot(samples, [r[f"variance_{e}"] for r in rows], style, label=e)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training samples evaluated")
    ax.set_ylabel("mean variance of the encoder gradient")
    ax.set_title("Score function against reparameterization")
    ax.legend()
    save_figure(fig, path)


def _summary(r: dict) -> str:
    lines = [f"# Gradient variance: score function against reparameterization ({r['dataset']})", "",
             f"{r['model']}; the variance per encoder parameter of the minibatch gradient of −ELBO, over {r['draws']} draws "
             "of z on one fixed minibatch of 100 training images, averaged over parameters.", "",
             "| training samples | reparameterization | score function | × | score function, batch-mean baseline | × |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['samples']:,} | {row['variance_reparameterization']:.3g} | {row['variance_score-function']:.3g} | "
                     f"{row['ratio_score_function']:.0f} | {row['variance_score-function-baseline']:.3g} | {row['ratio_score_function_baseline']:.0f} |")
    lines += ["", "Kingma & Welling (2013) set the reparameterization trick against the usual Monte Carlo (score-function) "
              "gradient estimator, which 'exhibits very high variance'; the × columns are that variance in multiples "
              "of the reparameterization's.", ""]
    return "\n".join(lines)


FIG2 = {  # data set -> (preset, latent sizes of the paper's panels)
    "mnist": ("aevb-mnist", (3, 5, 10, 20, 200)),
    "frey-face": ("aevb-frey", (2, 5, 10, 20)),
}


# Kingma & Welling (2013), section 5: Adagrad "with a global stepsize parameter chosen from {0.01, 0.02, 0.1}
# based on performance on the training set in the first few iterations"
STEP_SIZES = (0.01, 0.02, 0.1)


def _pilot_steps(last: int) -> int:
    """The paper's "first few iterations": a twentieth of the run, at most 1,000 steps."""
    return max(1, min(last // 20, 1000))


def _pick_step_size(train_for: Callable[[float], torch.nn.Module],
                    score: Callable[[torch.nn.Module], float]) -> tuple[float, dict[str, float | None]]:
    """The step size in STEP_SIZES whose short run scores best (higher is better), and every candidate's score;
    a candidate that diverges (a VaekitError or a score that is not finite) scores None and is never chosen."""
    scores: dict[float, float] = {}
    for lr in STEP_SIZES:
        try:
            scores[lr] = score(train_for(lr))
        except VaekitError:
            scores[lr] = math.nan
        if not math.isfinite(scores[lr]):
            scores[lr] = -math.inf
    best = max(scores, key=scores.get)
    return best, {str(lr): v if math.isfinite(v) else None for lr, v in scores.items()}


def aevb_fig2(out: str | Path, dataset: str = "mnist", budget: int = 1_000_000, latent_sizes: tuple[int, ...] | None = None,
              checkpoints: int = 8, data_dir: str | None = None, seed: int = 0, eval_rows: int = 1000,
              progress: bool = False, seeds: int = 1) -> dict[str, Any]:
    """Kingma & Welling's Figure 2: for each latent size, AEVB and wake-sleep on the same networks with the
    paper's recipe (Adagrad with its step size chosen from STEP_SIZES on the training bound after the first
    few iterations, M = 100, L = 1, weights from N(0, 0.01²), weight decay), the lower bound per example on
    training and test data against the number of training samples evaluated (log axis). With ``seeds`` > 1 every
    run is repeated from seeds ``seed``, ``seed`` + 1, ..., and the figure and summary show the mean over seeds.
    Any other data set uses the MNIST recipe with latent sizes (2, 5, 10)."""
    from .baselines import wake_sleep_step
    from .evaluation import mean_loss
    from .models import build
    from .runs import prepare
    from .train import fit, make_optimizer

    preset_name, sizes = FIG2.get(dataset, ("aevb-mnist", (2, 5, 10)))
    sizes = tuple(latent_sizes or sizes)
    if budget < 100 * checkpoints:
        raise VaekitError(f"--budget {budget}: at least 100 samples per checkpoint ({100 * checkpoints}) are needed")
    if seeds < 1:
        raise VaekitError(f"--seeds {seeds}: expected at least 1")
    last = budget // 100
    steps = sorted({max(1, round(last ** ((i + 1) / checkpoints))) for i in range(checkpoints)})  # log-spaced
    pilot = _pilot_steps(last)
    out = Path(out)
    curves: list[dict[str, Any]] = []
    seconds: dict[tuple[str, int], float] = {}  # training time of each run, evaluations excluded
    chosen: list[dict[str, Any]] = []
    seed_list = list(range(seed, seed + seeds))
    for run_seed in seed_list:
        tag = f"-seed{run_seed}" if seeds > 1 else ""
        for k in sizes:
            sets = preset(preset_name) + [f"data.name={json.dumps(dataset)}", f"model.latent_dim={k}", "train.epochs=1000000",
                                          "train.tensorboard=false", f"train.seed={run_seed}"]
            if data_dir is not None:
                sets.append(f"data.data_dir={json.dumps(data_dir)}")
            config = Config(out=str(out / f"aevb-{k}{tag}")).override(sets)
            resolved, data = prepare(config)
            train_part = _subset(data.train, eval_rows)
            test_part = _subset(data.test, eval_rows)

            def aevb(lr: float, stops: list[int], folder: Path, record) -> torch.nn.Module:
                """AEVB through the one trainer, resumed from checkpoint to checkpoint."""
                base = config.to_dict()
                for i, step in enumerate(stops):
                    run = fit(Config.from_dict({**base, "out": str(folder), "train": {**base["train"], "lr": lr, "max_steps": step}}),
                              resume=i > 0, progress=progress)
                    record(step, run.model)
                return run.model

            def wake_sleep(lr: float, stops: list[int], folder: Path, record) -> torch.nn.Module:
                """Wake-sleep on the same networks and initialization, with its own updates."""
                torch.manual_seed(run_seed)
                model = build(resolved.model)
                tc = replace(resolved.train, lr=lr)
                wake, sleep = make_optimizer(model.decoder.parameters(), tc), make_optimizer(model.encoder.parameters(), tc)
                g = torch.Generator().manual_seed(run_seed)
                done, epoch = 0, 0
                while done < stops[-1]:
                    for x, _ in data.train.batches(100, torch.Generator().manual_seed(run_seed * 1_000_003 + epoch), noise=g):
                        wake_sleep_step(model, x, wake, sleep, g)
                        done += 1
                        if done in stops:
                            record(done, model)
                        if done >= stops[-1]:
                            break
                    epoch += 1
                return model

            for method, run_method in (("AEVB", aevb), ("wake-sleep", wake_sleep)):
                with tempfile.TemporaryDirectory() as tmp:
                    lr, scores = _pick_step_size(lambda lr: run_method(lr, [pilot], Path(tmp) / str(lr), lambda *_: None),
                                                 lambda model: -mean_loss(model, train_part)["loss"])
                chosen.append({"method": method, "latent_dim": k, "seed": run_seed, "lr": lr, "pilot_steps": pilot,
                               "pilot_train_bound": scores})
                evaluation = [0.0]

                def record(step, model, method=method, evaluation=evaluation):
                    t = time.perf_counter()
                    curves.append({**_point(method, k, step, model, train_part, test_part, mean_loss), "seed": run_seed})
                    evaluation[0] += time.perf_counter() - t

                t = time.perf_counter()
                run_method(lr, steps, out / f"{'aevb' if method == 'AEVB' else 'wake-sleep'}-{k}{tag}", record)
                seconds[(method, k)] = seconds.get((method, k), 0.0) + time.perf_counter() - t - evaluation[0]
    result = {"experiment": "aevb-fig2", "dataset": dataset, "budget": budget, "preset": preset_name, "latent_sizes": list(sizes),
              "seeds": seed_list,
              "eval_rows": [len(train_part), len(test_part)], "points": curves, "step_sizes": chosen,
              "seconds": [{"method": m, "latent_dim": k, "seconds": v} for (m, k), v in seconds.items()]}
    return _write(out, "fig2", result, curves, lambda path: _plot_fig2(result, path), _summary_fig2)


def _subset(part, n: int):
    from .data import MemoryPart

    x, y = materialize(part, n, "cpu", 0)
    return MemoryPart(x, y, 1.0)  # binarized once: every checkpoint is measured on the same images


@torch.no_grad()
def _point(method: str, k: int, step: int, model, train_part, test_part, mean_loss) -> dict[str, Any]:
    model.eval()
    point = {"method": method, "latent_dim": k, "step": step, "samples": step * 100,
             "train_elbo": -mean_loss(model, train_part)["loss"], "test_elbo": -mean_loss(model, test_part)["loss"]}
    model.train()
    return point


def _across_seeds(points: list[dict], *keys: str) -> list[list[dict]]:
    """The points grouped by everything in ``keys`` but the seed, in the order of the first seed's."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault(tuple(p[k] for k in keys), []).append(p)
    return list(groups.values())


def _seed_means(points: list[dict]) -> list[dict]:
    """Figure 2's points averaged over seeds: one per method, N_z and checkpoint."""
    return [{**ps[0], **{key: sum(q[key] for q in ps) / len(ps) for key in ("train_elbo", "test_elbo")}, "seeds": len(ps)}
            for ps in _across_seeds(points, "method", "latent_dim", "step")]


def _plot_fig2(r: dict, path: Path) -> None:
    sizes = r["latent_sizes"]
    r = {**r, "points": _seed_means(r["points"])}
    fig, axes = panels(len(sizes), 3.6, 3.4)
    for ax, k in zip(axes, sizes):
        for method, colour in (("AEVB", "tab:red"), ("wake-sleep", "tab:green")):
            pts = [p for p in r["points"] if p["latent_dim"] == k and p["method"] == method]
            xs = [p["samples"] for p in pts]
            ax.plot(xs, [p["train_elbo"] for p in pts], "-", color=colour, label=f"{method} (train)")
            ax.plot(xs, [p["test_elbo"] for p in pts], "--", color=colour, label=f"{method} (test)")
        later = [p[key] for p in r["points"] if p["latent_dim"] == k and p["step"] > min(q["step"] for q in r["points"])
                 for key in ("train_elbo", "test_elbo")]
        if later:  # the first checkpoint's bound is hundreds of nats lower and would flatten the rest
            ax.set_ylim(min(later) - 5, max(later) + 5)
        ax.set_xscale("log")
        ax.set_title(f"{r['dataset']}, $N_z$ = {k}" + (f", mean of {len(r['seeds'])} seeds" if len(r.get("seeds", [0])) > 1 else ""))
        ax.set_xlabel("training samples evaluated")
    axes[0].set_ylabel("lower bound per example (nats)")
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


# Figure 2's horizontal axis, training samples evaluated (SPEC.md)
FIG2_AXIS = (10**5, 10**8)

# Kingma & Welling (2013), section 5: "Computation took around 20-40 minutes per million training samples with a
# Intel Xeon CPU running at an effective 40 GFLOPS" (the Figure 2 runs).
PAPER_MINUTES_PER_MILLION = (20, 40)


def _summary_fig2(r: dict) -> str:
    sizes = r["latent_sizes"]
    per_seed, seeds = r["points"], r.get("seeds", [0])
    r = {**r, "points": _seed_means(per_seed)}
    by = {(m, k): [p for p in r["points"] if p["latent_dim"] == k and p["method"] == m] for m in ("AEVB", "wake-sleep") for k in sizes}
    ahead = {k: sum(a["test_elbo"] > w["test_elbo"] for a, w in zip(by[("AEVB", k)], by[("wake-sleep", k)])) for k in sizes}
    final = {k: (by[("AEVB", k)][-1], by[("wake-sleep", k)][-1]) for k in sizes}
    lines = [f"# AEVB against wake-sleep ({r['dataset']}), Kingma & Welling (2013) Figure 2", "",
             f"Recipe of the `{r['preset']}` preset; {r['budget']:,} training samples per run (the paper: 10^8); lower bound "
             f"per example on {r['eval_rows'][0]} training and {r['eval_rows'][1]} test images at the last checkpoint"
             + (f", the mean over seeds {', '.join(map(str, seeds))}:" if len(seeds) > 1 else ":"), "",
             "| N_z | AEVB train | AEVB test | wake-sleep train | wake-sleep test | checkpoints with AEVB's test bound ahead |",
             "|---|---|---|---|---|---|"]
    for k, (a, w) in final.items():
        lines.append(f"| {k} | {a['train_elbo']:.2f} | {a['test_elbo']:.2f} | {w['train_elbo']:.2f} | {w['test_elbo']:.2f} | "
                     f"{ahead[k]} of {len(by[('AEVB', k)])} |")
    if len(seeds) > 1:
        test = {(p["method"], p["latent_dim"], p["step"], p["seed"]): p["test_elbo"] for p in per_seed}
        lines += ["", "AEVB − wake-sleep on the test bound, seed by seed, at each checkpoint from 10^5 samples on:", ""]
        lines += [f"- N_z = {k}, {p['samples']:,} samples: "
                  + ", ".join(f"{test[('AEVB', k, p['step'], s)] - test[('wake-sleep', k, p['step'], s)]:+.2f}" for s in seeds)
                  for k in sizes for p in by[("AEVB", k)] if p["samples"] >= FIG2_AXIS[0]]
    better = sum(a["test_elbo"] > w["test_elbo"] for a, w in final.values())
    pairs = [(k, a, w) for k in sizes for a, w in zip(by[("AEVB", k)], by[("wake-sleep", k)])]
    shown = [(k, a, w) for k, a, w in pairs if a["samples"] >= FIG2_AXIS[0]]
    behind = [(a["samples"] >= FIG2_AXIS[0], f"N_z = {k} at {a['samples']:,} samples")
              for k, a, w in pairs if a["test_elbo"] <= w["test_elbo"]]
    behind_shown = [where for on_axis, where in behind if on_axis]
    behind_left = [where for on_axis, where in behind if not on_axis]
    train = [final[k][0]["train_elbo"] for k in sizes]
    not_worse = train[-1] >= max(train) - 1.0
    gaps = ", ".join(f"{k}: {a['train_elbo'] - a['test_elbo']:.1f}" for k, (a, _) in final.items())
    minutes = {m: sum(t["seconds"] for t in r["seconds"] if t["method"] == m) / len(sizes) / len(seeds) / 60 * 1e6 / r["budget"]
               for m in ("AEVB", "wake-sleep")}
    picked = "; ".join(f"{c['method']}, N_z = {c['latent_dim']}" + (f", seed {c['seed']}" if len(seeds) > 1 else "") + f": {c['lr']}"
                       for c in r["step_sizes"])
    lines += ["", f"Adagrad step sizes, chosen from {{0.01, 0.02, 0.1}} by the training bound after "
              f"{r['step_sizes'][0]['pilot_steps']} iterations, as in the paper: {picked}."]
    lines += ["", "The paper's findings beside this run:", "",
              "| the paper (section 5, Figure 2) | this run | holds |", "|---|---|---|",
              f"| AEVB reaches a better bound than wake-sleep in all experiments | AEVB's final test bound ahead for {better} "
              f"of {len(sizes)} N_z | {'yes' if better == len(sizes) else 'no'} |",
              "| AEVB converges considerably faster: its bound above wake-sleep's throughout Figure 2's axis (10^5 to 10^8 "
              f"samples) | AEVB's test bound ahead at {len(shown) - len(behind_shown)} of {len(shown)} checkpoints from 10^5 samples on"
              + (f"; wake-sleep ahead at {'; '.join(behind_shown)}" if behind_shown else "")
              + f"; at all {len(pairs)} checkpoints, AEVB ahead at {len(pairs) - len(behind)}"
              + (f" (wake-sleep at {'; '.join(behind_left)}, left of the paper's axis)" if behind_left else "")
              + " | " + ("no checkpoint at 10^5 samples or more |" if not shown else "no |" if behind_shown else "yes |"),
              f"| more latent variables do not overfit more (the KL term regularizes) | train − test gap by N_z ({gaps} nats); "
              f"train bound at the largest N_z {'within 1 nat of' if not_worse else 'below'} the best | {'yes' if not_worse else 'no'} |",
              f"| 20–40 minutes per million training samples on a CPU at an effective 40 GFLOPS | {minutes['AEVB']:.1f} min "
              f"(AEVB, through the trainer, data reloaded at each checkpoint) and {minutes['wake-sleep']:.1f} min "
              "(wake-sleep) per million samples | |", ""]
    return "\n".join(lines)


def aevb_fig3(out: str | Path, dataset: str = "mnist", budget: int = 1_000_000, train_sizes: tuple[int, ...] = (1000, 50000),
              checkpoints: int = 6, data_dir: str | None = None, seed: int = 0, test_rows: int = 100, seeds: int = 1) -> dict[str, Any]:
    """Kingma & Welling's Figure 3: N_z = 3, 100 hidden units, trained on the first 1,000 and 50,000 training
    images with AEVB, wake-sleep and (on sets of at most 1,000 points, as in the paper) Monte-Carlo EM; the
    marginal log-likelihood of ``test_rows`` test images, estimated the same way for all three
    (``baselines.hmc_log_likelihood``), against the number of training samples evaluated. With ``seeds`` > 1
    every run is repeated from seeds ``seed``, ``seed`` + 1, ..., and the figure and summary show the means."""
    from .baselines import hmc_log_likelihood, mcem_step, tuned_step_size, wake_sleep_step
    from .models import build
    from .train import make_optimizer, prepare

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
    pilot = _pilot_steps(last)
    points: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []  # per test image at the last checkpoint, for paired differences between methods
    chosen: list[dict[str, Any]] = []

    def train(method: str, xs: torch.Tensor, lr: float, stops: list[int], record, run_seed: int) -> torch.nn.Module:
        """One method from the same initialization, with Adagrad at step size ``lr``, ``record``-ing at ``stops``.
        The N(0, I) prior on the weights enters the per-example objective with weight 1/N, N the training set's size."""
        torch.manual_seed(run_seed)
        model = build(resolved.model)
        tc = replace(resolved.train, lr=lr, weight_decay=1 / len(xs))
        whole, decoder, encoder = (make_optimizer(p, tc) for p in
                                   (model.parameters(), model.decoder.parameters(), model.encoder.parameters()))
        g = torch.Generator().manual_seed(run_seed)
        z = torch.zeros(len(xs), 3)  # Monte-Carlo EM's chain state, one z per training point
        hmc = {"step_size": 0.1, "accepted": 0.0}  # step size tuned towards 90 % acceptance, as the paper's; acceptances summed
        for step in range(1, stops[-1] + 1):
            idx = torch.randint(len(xs), (100,), generator=g)
            if method == "AEVB":
                whole.zero_grad(set_to_none=True)
                model.loss(xs[idx], generator=g).loss.backward()
                whole.step()
            elif method == "wake-sleep":
                wake_sleep_step(model, xs[idx], decoder, encoder, g)
            else:
                z[idx], rate = mcem_step(model, xs[idx], z[idx], decoder, step_size=hmc["step_size"], generator=g)
                hmc.update(step_size=tuned_step_size(hmc["step_size"], rate), accepted=hmc["accepted"] + rate)
            if step in stops:
                record(step, model, g, hmc if method == "MCEM" else None)
        return model

    seed_list = list(range(seed, seed + seeds))
    for run_seed in seed_list:
        for n in train_sizes:
            xs = x_all[:n]
            for method in ("AEVB", "wake-sleep", "MCEM") if n <= 1000 else ("AEVB", "wake-sleep"):
                # every method is scored by what the figure plots: log p(x), here of 100 training images
                lr, scores = _pick_step_size(lambda lr: train(method, xs, lr, [pilot], lambda *_: None, run_seed),
                                             lambda model: hmc_log_likelihood(model, xs[:100], k=500, hmc_steps=40,
                                                                              generator=torch.Generator().manual_seed(run_seed)).mean().item())
                chosen.append({"train_size": len(xs), "method": method, "seed": run_seed, "lr": lr, "weight_decay": 1 / len(xs),
                               "pilot_steps": pilot, "pilot_train_log_px": scores})
                last_ll: list[torch.Tensor] = []

                def record(step, model, g, hmc, n=len(xs), method=method, last_ll=last_ll, run_seed=run_seed):
                    ll = hmc_log_likelihood(model, x_test, k=500, hmc_steps=40, generator=g)
                    point = {"train_size": n, "method": method, "seed": run_seed, "step": step, "samples": step * 100,
                             "test_log_px": ll.mean().item(), "test_log_px_se": (ll.std() / len(ll) ** 0.5).item()}
                    if hmc is not None:  # Monte-Carlo EM's E-step: its acceptance rate so far and its tuned step size
                        point.update(hmc_acceptance=hmc["accepted"] / step, hmc_step_size=hmc["step_size"])
                    points.append(point)
                    last_ll[:] = [ll]

                train(method, xs, lr, steps, record, run_seed)
                final.append({"train_size": len(xs), "method": method, "seed": run_seed, "log_px": last_ll[0].tolist()})
    result = {"experiment": "aevb-fig3", "dataset": dataset, "budget": budget, "train_sizes": [min(n, len(x_all)) for n in train_sizes],
              "test_rows": len(x_test), "seeds": seed_list, "points": points, "final": final, "step_sizes": chosen}
    return _write(Path(out), "fig3", result, points, lambda path: _plot_fig3(result, path), _summary_fig3)


def _fig3_means(points: list[dict]) -> list[dict]:
    """Figure 3's points averaged over seeds, one per training set, method and checkpoint. The error combines
    the test images' (the same images for every seed, so it does not shrink with seeds) and the seeds'."""
    means = []
    for ps in _across_seeds(points, "train_size", "method", "step"):
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

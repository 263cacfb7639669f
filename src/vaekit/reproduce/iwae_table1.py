"""Burda, Grosse & Salakhutdinov (2015), Table 1: the VAE and the IWAE on MNIST, one and two stochastic layers,
trained with the paper's recipe scaled to a time budget and evaluated on the whole test set with K = 5,000."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import VaekitError
from ..files import write_text
from ..plots import panels, save_figure
from ..presets import preset
from .common import write_outputs

# row -> (preset, objective, K, the paper's test log p(x)); Burda et al., Table 1, dynamically binarized MNIST
ROWS: dict[str, tuple[str, str, int, float]] = {
    "vae-1": ("iwae-1layer", "elbo", 1, -86.76),
    "iwae5-1": ("iwae-1layer", "iwae", 5, -85.54),
    "iwae50-1": ("iwae-1layer", "iwae", 50, -84.78),
    "vae-2": ("iwae-2layer", "elbo", 1, -85.33),
    "iwae50-2": ("iwae-2layer", "iwae", 50, -82.90),
}


def parse_rows(text: str | None) -> tuple[str, ...]:
    """``--rows`` as row names (default: all of Table 1's rows vaekit runs); one line for an unknown name."""
    if text is None:
        return tuple(ROWS)
    names = tuple(r.strip() for r in text.split(",") if r.strip())
    unknown = [r for r in names if r not in ROWS]
    if unknown or not names:
        raise VaekitError(f"--rows {text!r}: expected comma-separated rows from {', '.join(ROWS)}")
    return names


def iwae_table1(out: str | Path, dataset: str = "mnist", budget_minutes: float = 10.0, rows: tuple[str, ...] = tuple(ROWS),
                k: int = 5000, test_rows: int | None = None, data_dir: str | None = None, seed: int = 0,
                batch_size: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Each row of ``rows`` trained for ``budget_minutes`` of wall-clock time with its preset (the paper's
    architecture; Adam with ε = 10⁻⁴; Burda et al.'s stepped schedule stretched over the budget; the decoder's
    output bias from the data's mean), then its test log p(x) estimated with ``k`` importance samples on the
    whole test set (or its first ``test_rows`` images). Writes table1.json, table1.csv, table1.md beside the
    paper's numbers, table1.png (the validation bound against training time, each run's test log p(x) at its end)
    and summary.md."""
    from ..evaluation import evaluate
    from ..train import fit

    if budget_minutes <= 0:
        raise VaekitError(f"--budget-minutes {budget_minutes:g}: expected a positive number of minutes")
    out = Path(out)
    results: list[dict[str, Any]] = []
    curves: dict[str, list[tuple[float, float]]] = {}
    for name in rows:
        preset_name, objective, iwae_k, paper = ROWS[name]
        sets = preset(preset_name) + [
            f"data.name={json.dumps(dataset)}", f"model.objective={json.dumps(objective)}", f"train.seed={seed}",
            f"train.time_budget={budget_minutes * 60}", "train.tensorboard=false"]
        if objective == "iwae":
            sets.append(f"model.iwae_k={iwae_k}")
        if batch_size is not None:
            sets.append(f"train.batch_size={batch_size}")
        if data_dir is not None:
            sets.append(f"data.data_dir={json.dumps(data_dir)}")
        t0 = time.perf_counter()
        run = fit(Config(out=str(out / name)).override(sets), progress=progress)
        wall = time.perf_counter() - t0
        trained = sum(r["seconds"] for r in run.history)
        t0 = time.perf_counter()
        report = evaluate(run.model, run.data, k=k, subset=test_rows, baselines=False, progress=progress)
        elapsed, clock = 0.0, []
        for r in run.history:
            elapsed += r["seconds"]
            clock.append((elapsed / 60, -r["val_loss"]))
        curves[name] = clock
        results.append({"row": name, "preset": preset_name, "objective": objective, "k_train": iwae_k, "paper": paper,
                        "log_px": report["log_px"], "log_px_se": report["log_px_se"], "elbo": report["elbo"],
                        "elbo_se": report["elbo_se"], "active_units": report["active_units"], "latent_dim": report["latent_dim"],
                        "epochs": len(run.history), "steps": run.history[-1]["step"] if run.history else 0,
                        "train_minutes": trained / 60, "wall_minutes": wall / 60, "eval_minutes": (time.perf_counter() - t0) / 60,
                        "test_images": report["n"], "k_eval": k})
    result = {"experiment": "iwae-table1", "dataset": dataset, "budget_minutes": budget_minutes, "seed": seed,
              "rows": results, "curves": {n: [list(p) for p in c] for n, c in curves.items()}}
    write_outputs(out, "table1", result, results, lambda path: _plot(result, path), _summary)
    write_text(out / "table1.md", _summary(result))
    return result


def _summary(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [f"# Burda et al. (2015), Table 1 on {result['dataset']}: {result['budget_minutes']:g} minutes of training per row",
             "", "Training min: the epochs' own time; wall min: the whole run with validation and checkpoints, which the "
             "time budget counts.", "",
             f"Test log p(x) in nats, importance sampled with K = {rows[0]['k_eval'] if rows else '-'} on "
             f"{rows[0]['test_images'] if rows else '-'} test images (± one standard error over the images); "
             "the paper's after 3,280 epochs at batch 20.", "",
             "| row | objective | ours log p(x) | paper | ours − paper | test ELBO | active units | epochs | training min | wall min | eval min |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        objective = "ELBO" if r["objective"] == "elbo" else f"IWAE k = {r['k_train']}"
        lines.append(f"| {r['row']} | {objective} | {r['log_px']:.2f} ± {r['log_px_se']:.2f} | {r['paper']:.2f} | "
                     f"{r['log_px'] - r['paper']:+.2f} | {r['elbo']:.2f} | {r['active_units']}/{r['latent_dim']} | "
                     f"{r['epochs']} | {r['train_minutes']:.1f} | {r['wall_minutes']:.1f} | {r['eval_minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def _plot(result: dict[str, Any], path: Path) -> None:
    fig, (ax,) = panels(1, 7.5, 4.5)
    for r in result["rows"]:
        pts = result["curves"][r["row"]]
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{r['row']}: validation ELBO per epoch")
        ax.errorbar([r["train_minutes"]], [r["log_px"]], yerr=[r["log_px_se"]], fmt="o", color=line.get_color(),
                    label=f"{r['row']}: test log p(x), K = {r['k_eval']} (paper {r['paper']:.2f})")
    finals = [r["log_px"] for r in result["rows"]]
    if finals:  # the first epochs sit far below; show where the runs end
        ax.set_ylim(min(finals) - 12, max(finals) + 3)
    ax.set_xlabel("training time (minutes, this machine)")
    ax.set_ylabel("nats per image (higher is better)")
    ax.set_title(f"Burda et al. Table 1 rows on {result['dataset']}, {result['budget_minutes']:g} min each")
    ax.legend(fontsize=7)
    save_figure(fig, path)

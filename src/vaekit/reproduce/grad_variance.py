"""The variance of the encoder's gradient: the score function against the reparameterization trick."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..data.parts import materialize
from ..errors import VaekitError
from ..plots import panels, save_figure
from ..evaluation import encoder_gradient_variance
from .common import write_outputs

ESTIMATORS = ("reparameterization", "score-function", "score-function-baseline")


def grad_variance(out: str | Path, dataset: str = "mnist", budget: int = 600_000, checkpoints: int = 6, draws: int = 50,
                  data_dir: str | None = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Train a VAE with the reparameterization trick and, at ``checkpoints`` points spread over ``budget``
    training samples, measure the variance of the encoder's minibatch gradient under each estimator from
    ``draws`` draws of z on one fixed minibatch of 100 training images."""
    from ..runs import prepare
    from ..train import fit

    if budget < 100 * checkpoints:
        raise VaekitError(f"--budget {budget}: at least 100 samples per checkpoint ({100 * checkpoints}) are needed")
    out = Path(out)
    sets = {"data.name": dataset, "model.hidden": [500], "model.activation": "tanh", "model.latent_dim": 20,
            "train.batch_size": 100, "train.tensorboard": False, "train.epochs": 10**6, "train.seed": seed}
    if data_dir is not None:
        sets["data.data_dir"] = data_dir
    steps = [max(1, round(budget / 100 * (i + 1) / checkpoints)) for i in range(checkpoints)]
    sets["train.max_steps"] = steps[-1]
    config = Config(out=str(out / "vae")).override([f"{k}={json.dumps(v)}" for k, v in sets.items()])
    resolved, data = prepare(config)
    x, _ = materialize(data.train, 100, "cpu", seed)
    rows = []

    def measure(trainer) -> None:  # at each checkpoint, in the middle of the one run
        step = trainer.state.step
        if step not in steps:
            return
        i = steps.index(step)
        g = torch.Generator().manual_seed(seed + i)
        v = {e: encoder_gradient_variance(trainer.model, x, e, draws, g)["mean_variance"] for e in ESTIMATORS}
        rows.append({"step": step, "samples": step * 100, **{f"variance_{e}": v[e] for e in ESTIMATORS},
                     "ratio_score_function": v["score-function"] / v["reparameterization"],
                     "ratio_score_function_baseline": v["score-function-baseline"] / v["reparameterization"]})

    fit(resolved, progress=progress, hooks={"on_step": measure})
    result = {"experiment": "grad-variance", "dataset": dataset, "budget": budget, "draws": draws,
              "model": "MLP 500 tanh, 20 latent units, Bernoulli, Adam 1e-3, batch 100", "rows": rows,
              "data_shape": list(resolved.model.input_shape)}
    return write_outputs(out, "grad_variance", result, rows, lambda path: _plot(rows, path), _summary)


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



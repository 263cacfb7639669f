"""Pictures of a trained model, and the one-file HTML report of a run that gathers them.

Each ``draw_*`` computes with ``explore`` and writes one PNG, returning what it wrote and any
figures it measured; ``write_report`` draws the lot and embeds it in ``report.html``.
"""
from __future__ import annotations

import base64
import html
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoint as ckpt
from . import explore
from .data.parts import materialize
from .errors import VaekitError
from .files import read_json, read_text, write_text
from .plots import save_curves, save_grid, save_scatter

REPORT = "report.html"


def _seeded(seed: int, device) -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def _device(model) -> torch.device:
    return model.device


def draw_samples(model, path: Path, n: int = 64, temperature: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """A grid of decoder means at n prior draws (temperature T: z ~ N(0, T² I))."""
    x = explore.prior_samples(model, n, _seeded(seed, _device(model)), temperature)
    save_grid(x, path, nrow=_row(n))
    return {"path": path, "n": n, "temperature": temperature}


def draw_reconstructions(model, x: torch.Tensor, path: Path, y: torch.Tensor | None = None) -> dict[str, Any]:
    """Originals above their reconstructions."""
    save_grid(torch.cat([x, model.reconstruct(x, y)]), path, nrow=len(x))
    return {"path": path, "n": len(x)}


def draw_conditional_samples(model, path: Path, n: int = 10, temperature: float = 1.0, seed: int = 0,
                             labels: list[int] | None = None) -> dict[str, Any]:
    """One row per label, one prior draw of z per column."""
    grid = explore.conditional_samples(model, n, _seeded(seed, _device(model)), temperature, labels)
    save_grid(grid.flatten(0, 1), path, nrow=n)
    return {"path": path, "n": n, "temperature": temperature}


def draw_style_transfer(model, x: torch.Tensor, y: torch.Tensor, path: Path) -> dict[str, Any]:
    """Per row, an input and its style decoded under every label."""
    grid = explore.style_transfer(model, x, y)  # (B, C, *shape)
    save_grid(torch.cat([x[:, None], grid], 1).flatten(0, 1), path, nrow=grid.shape[1] + 1)
    return {"path": path, "n": len(x)}


def draw_denoise(model, x: torch.Tensor, path: Path, kind: str | None = None, level: float | None = None, seed: int = 0,
                 y: torch.Tensor | None = None) -> dict[str, Any]:
    """Rows: corrupted, denoised, clean."""
    x_tilde, x_hat = explore.denoise(model, x, kind, level, _seeded(seed, _device(model)), y)
    save_grid(torch.cat([x_tilde, x_hat, x]), path, nrow=len(x))
    return {"path": path, "n": len(x), "mse_corrupted": (x_tilde - x).pow(2).mean().item(), "mse_denoised": (x_hat - x).pow(2).mean().item()}


def draw_impute(model, x: torch.Tensor, missing: torch.Tensor, path: Path, mean_image: torch.Tensor, steps: int = 200,
                method: str = "pseudo-gibbs", seed: int = 0, show: int = 8, y: torch.Tensor | None = None) -> dict[str, Any]:
    """Rows: the observed part (missing pixels grey), the model's completion, the truth; with the
    error over the missing pixels against filling them with the training mean, where the chains start."""
    missing = missing.expand_as(x).to(x.device)
    filled, rate = explore.impute(model, x, missing, steps, method, _seeded(seed, _device(model)), init=mean_image.to(x.device), y=y)
    by_mean = torch.where(missing, mean_image.to(x.device).expand_as(x), x)
    shown = torch.where(missing[:show], torch.full_like(x[:show], 0.5), x[:show])
    save_grid(torch.cat([shown, filled[:show], x[:show]]), path, nrow=min(show, len(x)))
    return {"path": path, "n": len(x), "method": method, "steps": steps, "acceptance_rate": rate,
            "mse_model": explore.imputation_error(x, filled, missing), "mse_mean_imputation": explore.imputation_error(x, by_mean, missing)}


def draw_interpolations(model, pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path, steps: int = 10,
                        labels: list[tuple[torch.Tensor, int]] | None = None) -> dict[str, Any]:
    """Per pair, a linear strip and a spherical one, each from the first input's code to the second's.
    ``labels``: for a conditional model, per pair the inputs' labels (2,) and the label to decode under."""
    if not pairs:
        raise VaekitError("interpolation needs a pair of inputs; the test split has fewer than 2 images")
    labels = labels or [(None, None)] * len(pairs)
    rows = [explore.interpolate(model, a, b, steps, spherical, y, label) for (a, b), (y, label) in zip(pairs, labels)
            for spherical in (False, True)]
    save_grid(torch.cat(rows), path, nrow=steps)
    return {"path": path, "pairs": len(pairs), "steps": steps}


def draw_traverse(model, x: torch.Tensor, path: Path, units: list[int], span: float = 3.0, steps: int = 9,
                  y: torch.Tensor | None = None, label: int | None = None) -> dict[str, Any]:
    """One row per latent unit, swept over [−span, span] around x's posterior mean."""
    grid = explore.traverse(model, x, units, span, steps, y, label)
    save_grid(grid.flatten(0, 1), path, nrow=steps)
    return {"path": path, "units": units, "span": span}


def draw_manifold(model, path: Path, n: int = 20, units: tuple[int, int] = (0, 1), label: int | None = None) -> dict[str, Any]:
    """The learned manifold over two latent units, labelled with the units and their axes."""
    grid = explore.manifold(model, n, units, label=label)
    save_grid(grid.flatten(0, 1), path, nrow=n, upscale=max(1, 32 // grid.shape[-2]))
    return {"path": path, "n": n, "units": list(units)}


def draw_embed(model, x: torch.Tensor, y: torch.Tensor | None, path: Path, method: str = "pca", compare=None,
               classes: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Posterior means of x coloured by label; a second model's beside them with ``compare``."""
    if len(x) < 3:
        raise VaekitError(f"an embedding needs at least 3 examples to place in the plane; got {len(x)}")
    labels = None if y is None or y.dim() > 1 else y.cpu().numpy()  # attribute vectors colour nothing
    panels = []
    for m in (model, compare) if compare is not None else (model,):
        points, how = explore.embed(m, x.to(_device(m)), method, seed, y)
        panels.append((points.numpy(), labels, f"{type(m).__name__}: {how}"))
    save_scatter(panels, path, classes)
    return {"path": path, "n": len(x), "method": method}


def _row(n: int) -> int:
    return max(1, round(n ** 0.5))


def format_evaluation(r: dict) -> str:
    """An evaluation (``vaekit eval``'s eval.json) as a small plain-text table."""
    lines = [f"{r['split']} split, {r['n']} examples, {r['dims']} dimensions; nats per example (± standard error)"]

    def row(name, key, bits=None):
        if key in r:
            se = r.get(key + "_se")
            lines.append(f"  {name:<34} {r[key]:>10.2f}" + (f" ± {se:.2f}" if se is not None else "") +
                         (f"   ({r[bits]:.4f} bits/dim)" if bits and bits in r else ""))

    row("ELBO", "elbo", "elbo_bits_per_dim")
    row("  reconstruction −E_q[log p(x|z)]", "recon")
    row("  KL(q(z|x) ‖ p(z))", "kl")
    row(f"log p(x), importance sampled K={r.get('k')}", "log_px", "log_px_bits_per_dim")
    row(f"log p(x), naive from prior K={r.get('k_naive')}", "log_px_naive")
    row("squared error per example", "squared_error")
    row("binary cross-entropy per example", "bce")
    if "active_units" in r:
        lines.append(f"  active units                       {r['active_units']:>10d} of {r['latent_dim']}")
    b = r.get("baselines")
    if b:
        lines.append(f"  MSE per pixel: model {r['mse_per_pixel']:.4f}, PCA at the same size {b['pca_mse_per_pixel']:.4f}")
        if "probe_accuracy_encoder" in b:
            lines.append(f"  linear probe accuracy: encoder means {b['probe_accuracy_encoder']:.3f}, PCA {b['probe_accuracy_pca']:.3f}")
    if "warning" in r:
        lines.append("warning: " + r["warning"])
    return "\n".join(lines)


@torch.no_grad()
def draw_all(model, dataset, out: Path, seed: int = 0) -> list[tuple[str, Path, str]]:
    """Every picture the report shows, written into ``out``: (title, path, caption) in report order. A picture
    that cannot be drawn for this model or data (a test split of one row has no embedding) is left out with a
    warning that says why; the others are drawn, since the run itself is fine."""
    device = _device(model)
    x, y = materialize(dataset.test, 2000, device, seed)
    is_vae = model.prior is not None
    shown: list[tuple[str, Path, str]] = []

    def draw(title: str, name: str, caption: Callable[[], str] | str, picture: Callable[[Path], Any]) -> None:
        try:
            picture(out / name)
        except (VaekitError, ValueError, IndexError, RuntimeError) as e:
            print(f"vaekit: warning: {title.lower()} not drawn ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                  file=sys.stderr)
            return
        shown.append((title, out / name, caption() if callable(caption) else caption))

    if dataset.kind == "image" and model.conditional:  # conditional: every picture needs its labels
        draw("Reconstructions", "reconstructions.png", "test images (top) and their reconstructions",
             lambda p: draw_reconstructions(model, x[:8], p, y[:8]))
        draw("Samples by label", "samples.png", "one row per label; each column one z ~ N(0, I)",
             lambda p: draw_conditional_samples(model, p, 10, seed=seed))
        draw("Style transfer", "style.png", "each test image, then its z decoded under every label",
             lambda p: draw_style_transfer(model, x[:6], y[:6], p))
    elif dataset.kind == "image":
        draw("Reconstructions", "reconstructions.png", "test images (top) and their reconstructions",
             lambda p: draw_reconstructions(model, x[:8], p))
        if is_vae:
            draw("Samples", "samples.png", "decoder means at z ~ N(0, I)", lambda p: draw_samples(model, p, 64, seed=seed))
        pairs = [(x[2 * i], x[2 * i + 1]) for i in range(min(3, len(x) // 2))]
        draw("Interpolations", "interpolations.png",
             "per pair of test images: linear, then spherical, from the first's posterior mean to the second's",
             lambda p: draw_interpolations(model, pairs, p))
        if is_vae:
            units = explore.most_active_units(model, x, 8)
            draw("Traversals", "traverse.png", f"units {units} (most active first) from −3 to 3 around the first test image's code",
                 lambda p: draw_traverse(model, x[0], p, units))
            plane = (0, 1) if model.latent_dim == 2 else tuple(units[:2])
            draw("Learned manifold", "manifold.png",
                 f"units {plane[0]} (left to right) and {plane[1]} (bottom to top) through the inverse Gaussian CDF of an even grid"
                 + ("" if model.latent_dim == 2 else "; the other units at 0"), lambda p: draw_manifold(model, p, 20, plane))
    draw("Latent space", "embedding.png", f"posterior means of {len(x)} test examples",
         lambda p: draw_embed(model, x, y, p, classes=dataset.classes, seed=seed))
    return shown


def write_report(run: str | Path, model=None, dataset=None, seed: int = 0, out: str | Path | None = None) -> Path:
    """Draw every picture into ``out`` (the run directory unless given) and write ``report.html``
    there: one file with the images inside it, that opens from disk in any browser."""
    run = Path(run)
    out = run if out is None else Path(out)
    if model is None:
        model = ckpt.load(run)
    if dataset is None:
        from .runs import prepare

        _, dataset = prepare(model.config)
    was_training = model.training
    model.eval()
    history = [json.loads(line) for line in read_text(run / ckpt.METRICS, "metrics").splitlines()] if (run / ckpt.METRICS).exists() else []
    shown = []
    if history:
        save_curves(history, out / "curves.png")
        shown.append(("Training", out / "curves.png", "per epoch, on the training (solid) and validation (dashed) data"))
    shown += draw_all(model, dataset, out, seed)
    model.train(was_training)
    config = read_text(run / ckpt.CONFIG, "run's config") if (run / ckpt.CONFIG).exists() else "{}"
    evaluation = read_json(run / "eval.json", "evaluation") if (run / "eval.json").exists() else None
    write_text(out / REPORT, _html(run.name, config, evaluation, shown))
    return out / REPORT


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html(name: str, config: str, evaluation: dict | None, shown: list[tuple[str, Path, str]]) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>vaekit run {e(name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}pre{background:#f6f6f6;padding:1em;overflow:auto}"
             "figure{margin:0 0 2em 0}figcaption{color:#555;font-size:90%}</style></head><body>",
             f"<h1>vaekit run <code>{e(name)}</code></h1>"]
    if evaluation is not None:
        parts.append(f"<h2>Evaluation</h2><pre>{e(format_evaluation(evaluation))}</pre>")
    for title, path, caption in shown:
        parts.append(f"<h2>{e(title)}</h2><figure><img src=\"{_img(path)}\" alt=\"{e(title)}\">"
                     f"<figcaption>{e(caption)} ({e(path.name)})</figcaption></figure>")
    parts.append(f"<h2>Configuration</h2><pre>{e(config)}</pre></body></html>\n")
    return "\n".join(parts)

"""The explore commands as functions: a run's model and data set in, one labelled picture out.

Each view picks what its command documents — the first test images, the most active units, the
labels of a conditional model — draws with ``report`` and returns what it wrote (``path``) and
what it measured. ``vaekit sample RUN`` is ``views.sample(model, dataset, out)``; from Python::

    model, dataset = vaekit.runs.open_run("runs/mnist-vae")
    views.traverse(model, dataset, Path("pictures"), units="0,3,5")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import explore, report
from .data import Dataset
from .data.parts import materialize
from .data.readers import read_image_tensor, read_mask
from .errors import VaekitError
from .limits import checked


def test_images(model, dataset: Dataset, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first ``n`` test images (binarized once as the evaluation does) and their labels."""
    if dataset.kind != "image":
        raise VaekitError(f"data {dataset.name!r} is not images; this command draws pictures of images")
    return materialize(dataset.test, n, model.device, seed)


def parse_units(text: str | None, flag: str = "--units", what: str = "unit numbers") -> list[int] | None:
    """"0,3,5" as [0, 3, 5]; None stays None."""
    if text is None:
        return None
    try:
        return [int(u) for u in text.split(",")]
    except ValueError:
        raise VaekitError(f"{flag} {text!r}: expected comma-separated {what} such as 0,1") from None


def _own(model, y):
    """The labels, for a model that encodes with them; None for any other."""
    return y if model.conditional else None


@checked
def sample(model, dataset, out: Path, n: int = 64, temperature: float = 1.0, label: list[int] | None = None, seed: int = 0) -> dict[str, Any]:
    """Decoded prior samples; a conditional model's per label (``label``: the classes to draw, default all)."""
    if model.conditional:
        per_label = n if label else max(1, n // model.n_classes)
        return report.draw_conditional_samples(model, out / "samples.png", per_label, temperature, seed, label)
    if label:
        raise VaekitError("--label: this run's model is not conditional (train with --model cvae)")
    return report.draw_samples(model, out / "samples.png", n, temperature, seed)


@checked
def style(model, dataset, out: Path, n: int = 8, seed: int = 0) -> dict[str, Any]:
    """A conditional model's test images, each decoded under every label in its own style."""
    if not model.conditional:
        raise VaekitError("style transfer needs a conditional VAE (train with --model cvae)")
    x, y = test_images(model, dataset, n, seed)
    return report.draw_style_transfer(model, x, y, out / "style.png")


@checked
def reconstruct(model, dataset, out: Path, n: int = 8, seed: int = 0) -> dict[str, Any]:
    """Test images above their reconstructions."""
    x, y = test_images(model, dataset, n, seed)
    return report.draw_reconstructions(model, x, out / "reconstructions.png", y)


@checked
def denoise(model, dataset, out: Path, n: int = 8, corruption: str | None = None, noise: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Corrupted, denoised and clean test images (a denoising autoencoder's own corruption unless named)."""
    x, y = test_images(model, dataset, n, seed)
    return report.draw_denoise(model, x, out / "denoise.png", corruption, noise, seed, _own(model, y))


@checked
def impute(model, dataset, out: Path, mask: str = "bottom", fraction: float = 0.5, method: str = "pseudo-gibbs", steps: int = 200,
           n: int = 500, seed: int = 0) -> dict[str, Any]:
    """Missing pixels of ``n`` test images filled in, the chains started from the training mean; the error over
    the missing pixels beside filling them with that mean. ``mask``: a name of ``explore.MASKS`` or a mask file."""
    x, y = test_images(model, dataset, n, seed)
    shape = tuple(x.shape[1:])
    if mask in explore.MASKS:
        missing, name = explore.make_mask(mask, shape, len(x), fraction, torch.Generator().manual_seed(seed)), mask
    else:
        missing, name = read_mask(Path(mask), shape), Path(mask).stem
    mean_image = materialize(dataset.train, 10000, model.device, seed)[0].mean(0)
    info = report.draw_impute(model, x, missing, out / f"impute-{name}.png", mean_image, steps, method, seed, y=_own(model, y))
    info["message"] = (f"imputation MSE over missing pixels: model {info['mse_model']:.4f}, mean imputation "
                       f"{info['mse_mean_imputation']:.4f}" + ("" if info["acceptance_rate"] is None else
                                                                f"; acceptance rate {info['acceptance_rate']:.2f}"))
    return info


@checked
def interpolate(model, dataset, out: Path, pair: list[list[int]] | None = None, files: list[str] | None = None, steps: int = 10,
                label: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Decodes along the way between the codes of two test images (``pair``: their indices, repeatable) or two
    image files; a conditional model under ``label`` (default: the first image's)."""
    labels = None
    if files:
        if model.conditional:
            raise VaekitError("--files: a conditional VAE needs the labels of its inputs; interpolate between test images (--pair)")
        a, b = (read_image_tensor(Path(f), model.input_shape).to(model.device) for f in files)
        pairs = [(a, b)]
    else:
        wanted = pair or [[0, 1], [2, 3], [4, 5]]
        x, y = test_images(model, dataset, max(max(p) for p in wanted) + 1, seed)
        bad = [i for p in wanted for i in p if not 0 <= i < len(x)]
        if bad:
            raise VaekitError(f"--pair: test index {bad[0]} is out of range (the test split has {len(x)} images)")
        pairs = [(x[i], x[j]) for i, j in wanted]
        if model.conditional:
            labels = [(y[[i, j]], int(y[i]) if label is None else label) for i, j in wanted]
    return report.draw_interpolations(model, pairs, out / "interpolations.png", steps, labels)


@checked
def traverse(model, dataset, out: Path, index: int = 0, units: str | list[int] | None = None, top: int = 8, span: float = 3.0,
             steps: int = 9, label: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Each of ``units`` (default: the ``top`` most active) swept from −span to span around test image ``index``'s code."""
    x, y = test_images(model, dataset, max(500, index + 1), seed)
    if index >= len(x):
        raise VaekitError(f"--index {index}: out of range (the test split has {len(x)} images)")
    y = _own(model, y)
    units = (parse_units(units) if isinstance(units, str) else units) or explore.most_active_units(model, x, top, y)
    shown = None if y is None else (int(y[index]) if label is None else label)
    return report.draw_traverse(model, x[index], out / "traverse.png", units, span, steps, None if y is None else y[index], shown)


@checked
def manifold(model, dataset, out: Path, n: int = 20, units: str | list[int] | None = None, label: int | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Kingma & Welling's Figure 4: decodes over an inverse-CDF grid of two units (0, 1 for a 2-D code, else the
    two most active); a conditional model under one ``label``."""
    if model.conditional and label is None:
        raise VaekitError("a conditional VAE's manifold is drawn under one label: give --label")
    units = parse_units(units) if isinstance(units, str) else units
    if units is None:
        x, y = test_images(model, dataset, 500, seed)
        units = [0, 1] if model.latent_dim == 2 else explore.most_active_units(model, x, 2, _own(model, y))
    if len(units) != 2:
        raise VaekitError(f"--units {units}: the manifold needs exactly two units")
    return report.draw_manifold(model, out / "manifold.png", n, tuple(units), label)


@checked
def embed(model, dataset, out: Path, n: int = 2000, method: str = "pca", compare: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Posterior means of ``n`` test examples coloured by label, beside those of the run ``compare`` when given."""
    x, y = materialize(dataset.test, n, model.device, seed)
    other = ckpt.load(compare, model.device) if compare else None
    if other is not None and other.input_shape != model.input_shape:
        raise VaekitError(f"--compare {compare}: its model takes inputs of shape {list(other.input_shape)}, "
                          f"this run's {list(model.input_shape)}; compare runs trained on the same data")
    return report.draw_embed(model, x, y, out / "embedding.png", method, other, dataset.classes, seed)


VIEWS = {f.__name__: f for f in (sample, style, reconstruct, denoise, impute, interpolate, traverse, manifold, embed)}

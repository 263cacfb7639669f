"""Pictures: image grids (Pillow) and training curves (matplotlib, Agg, imported only here)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .files import write_atomic


def image_grid(x: torch.Tensor, nrow: int, pad: int = 2, upscale: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one uint8 image of ``nrow`` images per row, pad pixels apart, as (H', W') or (H', W', C)."""
    x = x.detach().float().clamp(0, 1).cpu()
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = x[i]
    a = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if upscale > 1:
        a = a.repeat(upscale, 0).repeat(upscale, 1)
    return a[..., 0] if c == 1 else a


def save_grid(x: torch.Tensor, path: Path, nrow: int, upscale: int | None = None) -> None:
    """Save a grid PNG; small images are enlarged by whole pixels so 8×8 digits stay visible."""
    from PIL import Image

    h = x.shape[-2]
    upscale = upscale or max(1, 64 // h)
    img = Image.fromarray(image_grid(x, nrow, upscale=upscale))
    write_atomic(path, lambda tmp: img.save(tmp, format="PNG"))


def panels(n: int, width: float, height: float):
    """A figure of n side-by-side axes (matplotlib, Agg backend: no screen needed): (fig, axes list)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), constrained_layout=True, squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> None:
    """Write a figure as PNG atomically and free it."""
    import matplotlib.pyplot as plt

    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def save_curves(history: list[dict], path: Path) -> None:
    """Total loss, reconstruction and KL per epoch, train and validation."""
    epochs = [h["epoch"] for h in history]
    fig, axes = panels(3, 4, 3.5)
    for ax, key, title in zip(axes, ("loss", "recon", "kl"), ("loss (−ELBO for a VAE)", "reconstruction", "KL")):
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [h[f"{split}_{key}"] for h in history], style, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.legend()
    save_figure(fig, path)


def save_scatter(views: list[tuple[np.ndarray, np.ndarray | None, str]], path: Path, classes: list[str] | None = None) -> None:
    """Side-by-side scatter plots of 2-D points, coloured by label when there are labels."""
    fig, axes = panels(len(views), 5.5, 5)
    for ax, (points, labels, title) in zip(axes, views):
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
        else:
            few = int(labels.max()) < 10  # a qualitative palette while it has a colour per class
            sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10" if few else "viridis", s=4, alpha=0.7,
                            vmin=-0.5 if few else None, vmax=9.5 if few else None)
            cbar = fig.colorbar(sc, ax=ax, ticks=sorted(set(labels.tolist())))
            if classes:
                cbar.ax.set_yticklabels([classes[i] for i in sorted(set(labels.tolist()))])
        ax.set_title(title)
    save_figure(fig, path)

"""Using a trained model: prior samples, denoising, filling in missing pixels, interpolation,
traversal, the learned manifold and latent embeddings.

Pure functions over tensors: each takes a model and data and returns tensors (images as
(..., C, H, W) in the data's scale); pictures are drawn by ``report``. Every function that
samples takes a ``generator``.
"""
from __future__ import annotations

import torch

from .data.corrupt import corrupt
from .distributions import DiagonalGaussian
from .errors import VaekitError

MASKS = ("left", "right", "top", "bottom", "random")


@torch.no_grad()
def prior_samples(model, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Decoder means at z ~ N(0, T² I): (n, *shape). T < 1 trades variety for typicality."""
    _needs_prior(model)
    z = model.draw_prior(n, generator) * temperature
    return model.decode(z).mean


@torch.no_grad()
def conditional_samples(model, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                        labels: list[int] | None = None) -> torch.Tensor:
    """A conditional VAE's decoder means for n prior draws under each label: (labels, n, *shape).
    The same z in a column, so a column shows one style written as every class."""
    _needs_prior(model)
    labels = list(range(model.n_classes)) if labels is None else labels
    device = model.device
    z = model.draw_prior(n, generator) * temperature  # (n, k)
    y = torch.tensor(labels, device=device)[:, None].expand(len(labels), n)
    return model.decode(z.expand(len(labels), n, -1), y).mean


@torch.no_grad()
def style_transfer(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Encode each x with its own label, decode its z under every label: (B, n_classes, *shape)."""
    z = model.encode(x, y).mean  # (B, k)
    labels = torch.arange(model.n_classes, device=z.device)
    return model.decode(z[:, None].expand(-1, model.n_classes, -1), labels.expand(len(x), -1)).mean


@torch.no_grad()
def denoise(model, x: torch.Tensor, kind: str | None = None, level: float | None = None,
            generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̃, x̂): x corrupted (a denoising autoencoder's own corruption unless named) and its reconstruction."""
    kind = kind or model.corruption or "mask"
    level = level if level is not None else model.noise if model.noise is not None else 0.25
    x_tilde = corrupt(x, kind, level, generator)
    return x_tilde, model.reconstruct(x_tilde, y)


def make_mask(kind: str, shape: tuple[int, ...], n: int = 1, fraction: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Missing pixels as a bool tensor (n, *shape), True = missing: an image half, or a random ``fraction``."""
    if kind not in MASKS:
        raise VaekitError(f"mask {kind!r}: expected one of {', '.join(MASKS)} or a mask file")
    if kind == "random":
        return torch.rand((n, *shape), generator=generator) < fraction
    if len(shape) < 2:
        raise VaekitError(f"mask {kind!r} needs images (C, H, W); the data has rows of shape {shape}")
    h, w = shape[-2:]
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    half = {"left": cols < w // 2, "right": cols >= w // 2, "top": rows < h // 2, "bottom": rows >= h // 2}[kind]
    return half.expand(h, w).expand(n, *shape).clone()


@torch.no_grad()
def impute(model, x: torch.Tensor, missing: torch.Tensor, steps: int = 200, method: str = "pseudo-gibbs",
           generator: torch.Generator | None = None, init: float | torch.Tensor = 0.5, chains: int = 10,
           y: torch.Tensor | None = None) -> tuple[torch.Tensor, float | None]:
    """Fill in the ``missing`` entries of x with E[x_miss | x_obs] under the model; observed entries are returned unchanged.

    A Markov chain over (z, x_miss): z from the encoder given the current completion, then
    x_miss ~ p(x|z). "pseudo-gibbs" (Rezende et al., 2014) always takes the encoder's z;
    "metropolis" (Mattei & Frellsen, 2018) accepts it with the importance-weight ratio, which
    makes p(z, x_miss | x_obs) the chain's exact stationary law. Missing entries start at
    ``init`` (a number, or an image such as the training mean). The estimate is the decoder's
    mean averaged over the second half of ``chains`` independent chains per example: one chain
    commits to one completion (a 7 or a 9), the average weighs them. Returns it and the
    acceptance rate (None for pseudo-Gibbs, which accepts everything).
    """
    _needs_prior(model)
    if method not in ("pseudo-gibbs", "metropolis"):
        raise VaekitError(f"imputation method {method!r}: expected pseudo-gibbs or metropolis")
    if steps < 2 or chains < 1:
        raise VaekitError(f"steps={steps}, chains={chains}: the imputation needs at least 2 steps and 1 chain")
    missing = missing.to(x.device).expand_as(x)
    xs, miss = x.repeat(chains, *[1] * (x.dim() - 1)), missing.repeat(chains, *[1] * (x.dim() - 1))  # (chains·B, ...)
    start = torch.as_tensor(init, dtype=x.dtype, device=x.device).expand_as(x).repeat(chains, *[1] * (x.dim() - 1))
    x_cur = torch.where(miss, start, xs)
    ys = None if y is None else y.repeat(chains)
    z, accepted, total, kept = None, 0, torch.zeros_like(xs), 0
    for step in range(steps):
        q_z = model.encode(x_cur, ys)
        z_new = q_z.rsample(generator=generator)
        if method == "metropolis" and z is not None:
            # the current z re-weighed against the same proposal, given the current completion
            log_ratio = _log_weight(model, x_cur, z_new, q_z, ys) - _log_weight(model, x_cur, z, q_z, ys)
            take = torch.rand(log_ratio.shape, generator=generator, device=x.device).log() < log_ratio
            accepted += int(take.sum())
            z = torch.where(take[:, None], z_new, z)
        else:
            z = z_new
        p_x = model.decode(z, ys)
        x_cur = torch.where(miss, p_x.sample(generator).to(x.dtype), xs)
        if step >= steps // 2:
            total += p_x.mean
            kept += 1
    estimate = (total / kept).view(chains, *x.shape).mean(0)
    rate = accepted / (len(xs) * (steps - 1)) if method == "metropolis" else None
    return torch.where(missing, estimate, x), rate


def _log_weight(model, x, z, q_z: DiagonalGaussian, y=None) -> torch.Tensor:
    return model.decode(z, y).log_prob(x) + model.prior.log_prob(z) - q_z.log_prob(z)


def _decode_labels(label: int | None, shape: tuple[int, ...], device) -> torch.Tensor | None:
    """The label a conditional model decodes a batch of z under, as a tensor of the batch's shape."""
    return None if label is None else torch.full(shape, label, dtype=torch.long, device=device)


def imputation_error(x_true: torch.Tensor, x_filled: torch.Tensor, missing: torch.Tensor) -> float:
    """Mean squared error over the missing entries only."""
    missing = missing.expand_as(x_true)
    return ((x_filled - x_true)[missing] ** 2).mean().item()


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along the great circle from z0 to z1 (White, 2016); linear when they are parallel."""
    cos = (z0 * z1).sum(-1, keepdim=True) / (z0.norm(dim=-1, keepdim=True) * z1.norm(dim=-1, keepdim=True)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    so = torch.sin(omega)
    lerp = (1 - t) * z0 + t * z1
    arc = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / so.clamp_min(1e-12)
    return torch.where(so > 1e-6, arc, lerp)


@torch.no_grad()
def interpolate(model, x0: torch.Tensor, x1: torch.Tensor, steps: int = 10, spherical: bool = False,
                y: torch.Tensor | None = None, label: int | None = None) -> torch.Tensor:
    """Decode the path from z0 = E[z|x0] to z1 = E[z|x1] at ``steps`` evenly spaced t: (steps, *shape).
    A conditional model encodes with the inputs' labels ``y`` (2,) and decodes under ``label``."""
    if steps < 2:
        raise VaekitError(f"steps={steps}: an interpolation needs at least its two endpoints")
    z0, z1 = model.encode(torch.stack([x0, x1]), y).mean  # (k,) each
    t = torch.linspace(0, 1, steps, device=z0.device)[:, None]  # (steps, 1)
    z = slerp(z0, z1, t) if spherical else (1 - t) * z0 + t * z1
    return model.decode(z, _decode_labels(label, (steps,), z.device)).mean


@torch.no_grad()
def most_active_units(model, x: torch.Tensor, n: int | None = None, y: torch.Tensor | None = None) -> list[int]:
    """Latent units ordered by the variance of their posterior means over x (Burda et al.'s activity)."""
    mu = model.encode(x, y).mean
    order = mu.var(0).argsort(descending=True).tolist() if len(x) > 1 else list(range(mu.shape[-1]))
    return order[:n]


@torch.no_grad()
def traverse(model, x: torch.Tensor, units: list[int], span: float = 3.0, steps: int = 9,
             y: torch.Tensor | None = None, label: int | None = None) -> torch.Tensor:
    """Each unit in turn swept over [−span, span] while the others stay at E[z|x]: (len(units), steps, *shape).
    A conditional model encodes x with its label ``y`` (a 0-d tensor) and decodes under ``label``."""
    z = model.encode(x[None], None if y is None else y.reshape(1)).mean[0]  # (k,)
    _check_units(units, z.shape[-1])
    values = torch.linspace(-span, span, steps, device=z.device)
    grid = z.repeat(len(units), steps, 1)  # (U, steps, k)
    for row, u in enumerate(units):
        grid[row, :, u] = values
    return model.decode(grid, _decode_labels(label, grid.shape[:2], grid.device)).mean


def manifold_z(n: int, k: int, units: tuple[int, int] = (0, 1), base: torch.Tensor | None = None) -> torch.Tensor:
    """The (n, n, k) grid of Kingma & Welling's Figure 4: evenly spaced p = (i + ½)/n in (0, 1)²
    through the inverse Gaussian CDF, so equal prior mass lies between neighbours. Unit
    ``units[0]`` grows left to right, ``units[1]`` bottom to top; the rest stay at ``base`` (0)."""
    _check_units(list(units), k)
    if units[0] == units[1]:
        raise VaekitError(f"units {units}: the manifold plane needs two different latent units")
    q = torch.special.ndtri((torch.arange(n, dtype=torch.float64) + 0.5) / n).float()  # (n,)
    z = (torch.zeros(k) if base is None else base.detach().cpu().float()).repeat(n, n, 1)
    z[:, :, units[0]] = q[None, :]
    z[:, :, units[1]] = q.flip(0)[:, None]
    return z


@torch.no_grad()
def manifold(model, n: int = 20, units: tuple[int, int] = (0, 1), base: torch.Tensor | None = None,
             label: int | None = None) -> torch.Tensor:
    """Decoder means over ``manifold_z`` (under ``label`` for a conditional model): (n, n, *shape)."""
    _needs_prior(model)
    device = model.device
    return model.decode(manifold_z(n, model.latent_dim, units, base).to(device), _decode_labels(label, (n, n), device)).mean


@torch.no_grad()
def embed(model, x: torch.Tensor, method: str = "pca", seed: int = 0, y: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
    """Posterior means in two dimensions, and how they got there: as they are for a 2-D code,
    else by PCA or t-SNE (scikit-learn). ``y``: the labels a conditional model encodes with."""
    mu = torch.cat([model.encode(x[i:i + 1000], None if y is None else y[i:i + 1000]).mean for i in range(0, len(x), 1000)]).cpu()
    if mu.shape[1] <= 2:
        return (mu if mu.shape[1] == 2 else torch.cat([mu, torch.zeros_like(mu)], 1)), "latent units 1 and 2"
    if method == "pca":
        from sklearn.decomposition import PCA

        return torch.from_numpy(PCA(2, random_state=seed).fit_transform(mu.double().numpy())).float(), "PCA of the posterior means"
    if method == "tsne":
        from sklearn.manifold import TSNE

        points = TSNE(2, random_state=seed, init="pca", perplexity=min(30.0, (len(mu) - 1) / 3)).fit_transform(mu.double().numpy())
        return torch.from_numpy(points).float(), "t-SNE of the posterior means"
    raise VaekitError(f"embedding method {method!r}: expected pca or tsne")


def _needs_prior(model) -> None:
    if model.prior is None:
        raise VaekitError(f"a {type(model).__name__} has no prior to sample from; this needs a VAE (model.kind=vae)")


def _check_units(units: list[int], k: int) -> None:
    bad = [u for u in units if not 0 <= u < k]
    if bad:
        raise VaekitError(f"latent unit(s) {bad}: the model has units 0 to {k - 1}")


"""Measuring a model: the ELBO and its terms, importance-sampled log p(x) with its
standard error, the naive prior-sampling estimator, KL per latent unit, active
units, reconstruction error, and PCA / linear-probe baselines at the same latent size.

Every estimator takes an explicit seed; log-likelihoods are nats per example
(and bits per dimension), averaged over the data with their standard errors.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .data import Dataset, Part
from .data.parts import EVAL_SEED, materialize
from .data.arrays import as_rows
from .distributions import StandardNormal
from .errors import VaekitError
from .limits import check, checked
from .objectives import ELBO, ScoreFunction
from .runs import open_data

ACTIVE_THRESHOLD = 1e-2  # Burda et al. (2015): unit u is active when Cov_x(E_q[z_u]) > 10⁻²
ROWS_PER_CHUNK = 2048  # decoder rows (samples × images) per pass: big enough for the matmuls, small enough to stay in cache


@torch.no_grad()
def mean_loss(model: torch.nn.Module, part: Part, batch_size: int = 1000, device: str | torch.device = "cpu",
              seed: int = EVAL_SEED) -> dict[str, float]:
    """Mean loss, reconstruction and KL per example over ``part`` (−ELBO and its terms for a VAE)."""
    was_training = model.training
    model.eval()
    g = torch.Generator(device).manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in part.batches(batch_size, noise=g, device=device):
        out = model.loss(x, generator=g, y=y)
        sums += torch.stack([out.loss, out.recon, out.kl]).double() * len(x)
    model.train(was_training)
    loss, recon, kl = (sums / len(part)).tolist()
    return {"loss": loss, "recon": recon, "kl": kl}


def validation_bound(model, part: Part, k: int, device: str | torch.device = "cpu", batch_size: int = 500,
                     seed: int = EVAL_SEED) -> float:
    """The mean over ``part`` of the importance-sampled bound on log p(x) with ``k`` samples (the IWAE bound),
    with the same binarization and draws at every call, so that epochs compare like with like."""
    was_training = model.training
    model.eval()
    g = torch.Generator(device).manual_seed(seed)
    total = 0.0
    for x, y in part.batches(batch_size, noise=g, device=device):
        total += log_likelihood(model, x, k=k, generator=g, y=y).double().sum().item()
    model.train(was_training)
    return total / len(part)


def _log_mean_exp_over_samples(log_w_chunks, k: int) -> torch.Tensor:
    """log (1/K) Σ_k exp(log w_k), accumulated chunk by chunk with a stable running log-sum-exp."""
    acc = None
    for log_w in log_w_chunks:  # (c, B)
        part = torch.logsumexp(log_w, 0)
        acc = part if acc is None else torch.logaddexp(acc, part)
    return acc - math.log(k)


def _chunks(k: int, batch: int):
    c = max(1, ROWS_PER_CHUNK // batch)
    for start in range(0, k, c):
        yield min(c, k - start)


@torch.no_grad()
def log_likelihood(model, x: torch.Tensor, k: int = 5000, generator: torch.Generator | None = None,
                   y: torch.Tensor | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) with the encoder as proposal, per example: (B,).

    log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x): the IWAE bound, a lower
    bound on log p(x) that tightens as K grows and equals the ELBO in expectation at K = 1.
    """
    check("k", k)
    return _log_mean_exp_over_samples((model.log_weights(x, c, generator, y) for c in _chunks(k, len(x))), k)


@torch.no_grad()
def naive_log_likelihood(model, x: torch.Tensor, k: int = 5000, generator: torch.Generator | None = None,
                         y: torch.Tensor | None = None) -> torch.Tensor:
    """log (1/K) Σ_k p(x|z_k), z_k ~ p(z): unbiased for p(x) but hopeless in many dimensions, since
    almost no prior sample lands where the posterior is."""
    check("k", k)
    return _log_mean_exp_over_samples((model.prior_log_likelihoods(x, c, generator, y) for c in _chunks(k, len(x))), k)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), (v.std(unbiased=True) / math.sqrt(len(v))).item() if len(v) > 1 else float("nan")


@torch.no_grad()
@checked
def evaluate(model, data: Any = None, split: str = "test", k: int = 5000, k_naive: int | None = None, subset: int | None = None,
             batch_size: int = 10, seed: int = EVAL_SEED, baselines: bool = True, progress: bool = False,
             device: str | torch.device | None = None) -> dict[str, Any]:
    """Everything ``vaekit eval`` reports, as a JSON-ready dict (nats per example unless named otherwise).

    ``data`` is a Dataset (its ``split`` is evaluated), or rows in memory — a tensor or array (N, ...), an
    (x, y) pair or a torch Dataset — of which exactly these rows are evaluated, as they are; by default the
    data set the model was trained on (``model.config``, as ``fit`` and ``vaekit.load`` set it). The PCA
    and probe baselines fit on that data set's training rows, or on the evaluated rows when there are none.
    """
    check("k", k)
    device = model.device if device is None else device
    if split not in ("train", "val", "test"):
        raise VaekitError(f"split={split!r}: expected train, val or test")
    train_part = None
    if data is None or isinstance(data, Dataset):
        if data is None:
            if model.config is None:
                raise VaekitError("evaluate(model): this model was neither fitted nor loaded from a run; give the data to evaluate on")
            data = open_data(model.config)
        if tuple(data.shape) != model.input_shape:
            raise VaekitError(f"data {data.name!r} has rows of shape {tuple(data.shape)}, but the model takes {model.input_shape}")
        x, y = materialize(getattr(data, split), subset, device, seed)
        train_part = data.train
    else:
        x, y = as_rows(data)
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        x, y = x[:subset].to(device), None if y is None else y[:subset].to(device)
    model.eval()
    n, dims = len(x), math.prod(x.shape[1:])
    g = torch.Generator(device).manual_seed(seed)
    report: dict[str, Any] = {"split": split, "n": n, "dims": dims}
    is_vae = model.prior is not None
    per_unit = is_vae and not model.hierarchical and isinstance(model.prior, StandardNormal)
    k_naive = k if k_naive is None else k_naive
    rows = {name: torch.empty(n, dtype=torch.float64) for name in
            (("recon", "kl", "iwae", "naive") if is_vae else ("recon",))}  # preallocated: no per-batch tensor lists
    means, se_sq, bce = [], torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    kl_unit_sum = 0.0
    bar = _bar(progress, n)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size]
        yb = None if y is None else y[i:i + batch_size]
        q_z = model.encode(xb, yb)
        x_hat = model.decode(q_z.mean, yb).mean
        se_sq[i:i + len(xb)] = (x_hat - xb).pow(2).flatten(1).sum(1).double()
        bce[i:i + len(xb)] = torch.nn.functional.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), xb.clamp(0, 1), reduction="none").flatten(1).sum(1).double()
        means.append(q_z.mean)
        if is_vae:
            rec, kl = model.elbo_terms(xb, g, yb)
            rows["recon"][i:i + len(xb)] = rec.double()
            rows["kl"][i:i + len(xb)] = kl.double()
            if per_unit:  # one Gaussian posterior against N(0, I): its KL splits over units in closed form
                kl_unit_sum = kl_unit_sum + q_z.kl_per_unit().double().sum(0)
            rows["iwae"][i:i + len(xb)] = log_likelihood(model, xb, k, g, yb).double()
            rows["naive"][i:i + len(xb)] = naive_log_likelihood(model, xb, k_naive, g, yb).double()
        else:
            rows["recon"][i:i + len(xb)] = -model.decode(q_z.mean, yb).log_prob(xb).double()
        if bar is not None:
            bar.update(len(xb))
    if bar is not None:
        bar.close()
    mu = torch.cat(means)
    report["mse_per_pixel"] = se_sq.mean().item() / dims
    report["squared_error"] = _mean_se(se_sq)[0]
    if bool(((x == 0) | (x == 1)).all()):
        report["bce"] = _mean_se(bce)[0]
    report["recon"], report["recon_se"] = _mean_se(rows["recon"])
    bits = 1 / (dims * math.log(2))
    if is_vae:
        elbo = -(rows["recon"] + rows["kl"])
        report["kl"], report["kl_se"] = _mean_se(rows["kl"])
        report["elbo"], report["elbo_se"] = _mean_se(elbo)
        report["log_px"], report["log_px_se"] = _mean_se(rows["iwae"])
        report["log_px_naive"], report["log_px_naive_se"] = _mean_se(rows["naive"])
        report.update(k=k, k_naive=k_naive, elbo_bits_per_dim=-report["elbo"] * bits, log_px_bits_per_dim=-report["log_px"] * bits)
        variance = mu.var(0, unbiased=True) if n > 1 else torch.zeros(mu.shape[1])
        active = variance > ACTIVE_THRESHOLD
        if per_unit:
            report["kl_per_unit"] = (kl_unit_sum / n).tolist()
        report.update(mean_variance_per_unit=variance.tolist(),
                      active_units=int(active.sum()), latent_dim=int(mu.shape[1]))
        if active.sum() * 2 < mu.shape[1]:
            report["warning"] = (f"posterior collapse: only {int(active.sum())} of {mu.shape[1]} latent units are active "
                                 f"(Cov_x(E_q[z_u]) > {ACTIVE_THRESHOLD:g}); the rest carry no information about x")
    if baselines:
        report["baselines"] = _baselines(train_part, mu, x, y, model, device, seed)
    return report


def _baselines(train: Part | None, mu: torch.Tensor, x: torch.Tensor, y, model, device, seed) -> dict[str, Any]:
    """PCA at the model's latent size: reconstruction error, and linear-probe accuracy against the encoder's means;
    both fit on up to 10,000 training rows, or on the evaluated rows themselves when there is no training split."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    xt, yt = materialize(train, 10000, device, seed) if train is not None else (x, y)
    k = mu.shape[1]
    flat_t, flat = xt.flatten(1).cpu().numpy(), x.flatten(1).cpu().numpy()
    pca = PCA(n_components=min(k, *flat_t.shape), random_state=0).fit(flat_t)
    recon = pca.inverse_transform(pca.transform(flat))
    out: dict[str, Any] = {"train_rows": len(xt), "fit_on": "train" if train is not None else "evaluated rows",
                           "pca_mse_per_pixel": float(((recon - flat) ** 2).mean())}
    if y is not None and yt is not None and y.dim() == 1 and not y.is_floating_point() and len(torch.unique(yt)) > 1:
        feats_t = model.encode(xt, yt).mean.cpu().numpy()

        def probe(train_features, features):
            clf = LogisticRegression(max_iter=2000).fit(train_features, yt.cpu().numpy())
            return float(clf.score(features, y.cpu().numpy()))

        out["probe_accuracy_encoder"] = probe(feats_t, mu.cpu().numpy())
        out["probe_accuracy_pca"] = probe(pca.transform(flat_t), pca.transform(flat))
    return out


def _bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="image", desc="evaluating", dynamic_ncols=True)


def encoder_gradient_variance(model, x: torch.Tensor, estimator: str, n: int = 50, generator: torch.Generator | None = None,
                              y: torch.Tensor | None = None) -> dict[str, Any]:
    """The variance, over n independent draws of z, of the minibatch gradient of −ELBO with respect to each
    encoder parameter, under ``estimator`` (reparameterization, score-function, score-function-baseline):
    its mean over parameters, and the mean gradient (equal across unbiased estimators up to noise)."""
    if estimator not in ("reparameterization", "score-function", "score-function-baseline"):
        raise VaekitError(f"estimator {estimator!r}: expected reparameterization, score-function or score-function-baseline")
    beta = getattr(model.objective, "beta", 1.0)
    objective = ELBO(beta) if estimator == "reparameterization" else ScoreFunction(estimator == "score-function-baseline", beta)
    params = list(model.encoder.parameters())
    draws = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(objective(model, x, generator=generator, y=y).loss, params)])
                         for _ in range(n)])  # (n, P)
    return {"estimator": estimator, "n": n, "mean_variance": draws.var(0).mean().item(), "mean_gradient": draws.mean(0)}

"""Autoencoder, DenoisingAutoencoder, VAE, HierarchicalVAE and ConditionalVAE: encode / decode / reconstruct / loss(x) -> LossOutput.

One class per model and one ``loss`` contract, so the one trainer serves them all.
``build`` turns a resolved ModelConfig into a model; that is the only place where
configuration strings become classes.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .data.corrupt import corrupt
from .distributions import LIKELIHOODS, DiagonalGaussian, Gaussian, GaussianLearned, Likelihood, PointMass, StandardNormal
from .errors import VaekitError
from .nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .objectives import LossOutput, negative_elbo, negative_iwae, score_function_surrogate


class Autoencoder(nn.Module):
    """Deterministic encoder g and decoder f; loss −log p(x | f(g(x))): BCE under Bernoulli, ½‖x − x̂‖² + c under Gaussian."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: partial):
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood

    # ``y`` (labels) matters only to a conditional model; every model takes it so callers need not ask which they hold
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> PointMass:
        return PointMass(self.encoder(x))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Likelihood:
        return self.likelihood(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x, y).mean, y).mean

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0, generator: torch.Generator | None = None,
             y: torch.Tensor | None = None) -> LossOutput:
        rec = -self.decode(self.encode(x).mean).log_prob(x).mean()
        return LossOutput(rec, rec, torch.zeros((), device=x.device))


class DenoisingAutoencoder(Autoencoder):
    """Trained to reconstruct the clean x from a corrupted x̃ (Vincent et al., 2008)."""

    def __init__(self, encoder, decoder, likelihood, corruption: str, noise: float):
        super().__init__(encoder, decoder, likelihood)
        self.corruption, self.noise = corruption, noise

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.corruption, self.noise, generator)

    def loss(self, x, kl_weight=1.0, generator=None, y=None):
        rec = -self.decode(self.encode(self.corrupt(x, generator)).mean).log_prob(x).mean()
        return LossOutput(rec, rec, torch.zeros((), device=x.device))


class VAE(Autoencoder):
    """q(z|x) = N(μ(x), diag σ²(x)) from an encoder predicting (μ, log σ²); p(z) = N(0, I); loss −ELBO with weight β on the KL."""

    def __init__(self, encoder, decoder, likelihood, latent_dim: int, beta: float = 1.0, mc_samples: int = 1,
                 objective: str = "elbo", iwae_k: int = 50, kl_estimator: str = "analytic", estimator: str = "reparameterization"):
        super().__init__(encoder, decoder, likelihood)
        self.prior = StandardNormal(latent_dim)
        self.beta, self.mc_samples = beta, mc_samples
        self.objective, self.iwae_k, self.kl_estimator, self.estimator = objective, iwae_k, kl_estimator, estimator

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian:
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode z ~ N(0, I): the decoder's mean image by default, else a draw from p(x|z)."""
        device = next(self.parameters()).device
        p_x = self.decode(self.prior.sample(n, generator, device), y)
        return p_x.mean if mean else p_x.sample(generator)

    def loss(self, x, kl_weight=1.0, generator=None, y=None):
        q_z = self.encode(x, y)
        if self.objective == "iwae":
            z = q_z.rsample(self.iwae_k, generator)  # (K, B, k)
            return negative_iwae(-self.decode(z, y).log_prob(x), q_z.log_prob(z) - self.prior.log_prob(z))
        z = q_z.rsample(None if self.mc_samples == 1 else self.mc_samples, generator)
        if self.estimator != "reparameterization":
            return self._score_function_loss(x, z.detach(), q_z, kl_weight, y)
        rec = -self.decode(z, y).log_prob(x)  # before the KL, as in the IWAE path: autograd then sums in the same order
        kl = q_z.kl() if self.kl_estimator == "analytic" else q_z.log_prob(z) - self.prior.log_prob(z)
        return negative_elbo(rec, kl, self.beta * kl_weight)

    def _score_function_loss(self, x, z, q_z, kl_weight, y) -> LossOutput:
        """−ELBO whose encoder gradient for the reconstruction term is the score-function estimate (z carries no
        path to φ); the KL keeps its closed-form gradient. With "score-function-baseline" the signal is centred
        on its batch mean."""
        log_px = self.decode(z, y).log_prob(x)  # (L, B) or (B,)
        baseline = log_px.detach().mean() if self.estimator == "score-function-baseline" else 0.0
        s = score_function_surrogate(log_px, q_z.log_prob(z), baseline)
        out = negative_elbo(-log_px, q_z.kl(), self.beta * kl_weight)
        return LossOutput(out.loss - (s - s.detach()).mean(), out.recon, out.kl)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample −log p(x|z) and the analytic KL per example: (B,), (B,)."""
        q_z = self.encode(x, y)
        return -self.decode(q_z.rsample(generator=generator), y).log_prob(x), q_z.kl()

    def log_weights(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, z_k) − log q(z_k|x) for n draws z_k ~ q(z|x): (n, B). For evaluation: the decodes are spent."""
        q_z = self.encode(x, y)
        z = q_z.rsample(n, generator)  # (n, B, k)
        return self.decode(z, y).log_prob_(x) + self.prior.log_prob(z) - q_z.log_prob(z)

    def prior_log_likelihoods(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None,
                              y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z_k) for n draws z_k ~ p(z) per example: (n, B). For evaluation: the decodes are spent."""
        z = self.prior.sample(n * len(x), generator, x.device).view(n, len(x), -1)
        return self.decode(z, y).log_prob_(x)


def _gaussian(params: torch.Tensor) -> DiagonalGaussian:
    mu, log_var = params.chunk(2, dim=-1)
    return DiagonalGaussian(mu, log_var)


class HierarchicalVAE(VAE):
    """Stochastic layers z1 … zL: p(x|z1) p(z1|z2) … p(zL), q(z1|x) q(z2|z1) … (Burda et al., 2015).

    ``encoder``/``decoder`` connect x and z1; ``ups[l]`` gives q(z_{l+2}|z_{l+1}) and ``downs[l]``
    gives p(z_{l+1}|z_{l+2}), each a diagonal Gaussian. The KL terms have no closed form, so the
    ELBO is estimated with samples. The latent space the explore commands see is the top layer:
    ``encode`` passes posterior means up, ``decode`` passes prior means down.
    """

    def __init__(self, encoder, decoder, likelihood, ups: nn.ModuleList, downs: nn.ModuleList, latent_dims: tuple[int, ...],
                 beta: float = 1.0, mc_samples: int = 1, objective: str = "elbo", iwae_k: int = 50):
        super().__init__(encoder, decoder, likelihood, latent_dims[-1], beta, mc_samples, objective, iwae_k, "sampled")
        self.ups, self.downs, self.latent_dims = ups, downs, latent_dims

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian:
        q = _gaussian(self.encoder(x))
        for up in self.ups:
            q = _gaussian(up(q.mean))
        return q

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Likelihood:
        for down in reversed(self.downs):
            z = _gaussian(down(z)).mean
        return self.likelihood(self.decoder(z))

    def _terms(self, x: torch.Tensor, n: int | None, generator=None, spent: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(−log p(x|z1), Σ_l log q(z_l|z_{l−1}) − log p(z_l|z_{l+1})) for n draws of the chain: (n, B) each, or (B,)."""
        q = _gaussian(self.encoder(x))
        z = q.rsample(n, generator)
        zs, log_q = [z], q.log_prob(z)
        for up in self.ups:
            q = _gaussian(up(z))
            z = q.rsample(generator=generator)
            zs.append(z)
            log_q = log_q + q.log_prob(z)
        log_p = self.prior.log_prob(zs[-1])
        for lower, upper, down in zip(zs, zs[1:], self.downs):
            log_p = log_p + _gaussian(down(upper)).log_prob(lower)
        p_x = self.likelihood(self.decoder(zs[0]))
        return -(p_x.log_prob_(x) if spent else p_x.log_prob(x)), log_q - log_p

    def loss(self, x, kl_weight=1.0, generator=None, y=None):
        if self.objective == "iwae":
            return negative_iwae(*self._terms(x, self.iwae_k, generator))
        rec, kl = self._terms(x, None if self.mc_samples == 1 else self.mc_samples, generator)
        return negative_elbo(rec, kl, self.beta * kl_weight)

    def elbo_terms(self, x, generator=None, y=None):
        return self._terms(x, None, generator)

    def log_weights(self, x, n, generator=None, y=None):
        rec, log_ratio = self._terms(x, n, generator, spent=True)
        return -rec - log_ratio

    def prior_log_likelihoods(self, x, n, generator=None, y=None):
        z = self.prior.sample(n * len(x), generator, x.device).view(n, len(x), -1)
        for down in reversed(self.downs):  # ancestral sampling down the layers
            z = _gaussian(down(z)).rsample(generator=generator)
        return self.likelihood(self.decoder(z)).log_prob_(x)


class ConditionalVAE(VAE):
    """q(z|x, y) and p(x|z, y) with y a class label fed to both as a one-hot vector, or an attribute
    vector as it is (Sohn et al., 2015); p(z) = N(0, I) stays unconditional, so z carries what the
    condition does not: the style."""

    def __init__(self, encoder, decoder, likelihood, latent_dim: int, n_classes: int, event_ndim: int, beta: float = 1.0,
                 mc_samples: int = 1, objective: str = "elbo", iwae_k: int = 50, kl_estimator: str = "analytic"):
        super().__init__(encoder, decoder, likelihood, latent_dim, beta, mc_samples, objective, iwae_k, kl_estimator)
        self.n_classes, self.event_ndim = n_classes, event_ndim

    def _condition(self, y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The condition as a vector per example: a label one-hot, or an attribute vector as it is."""
        if y is None:
            raise VaekitError("a conditional VAE needs the labels y of its inputs (model.kind=cvae)")
        if y.is_floating_point():
            if y.shape[-1] != self.n_classes:
                raise VaekitError(f"condition vectors of length {y.shape[-1]}: this conditional VAE takes {self.n_classes}")
            return y.to(like.dtype).expand(*like.shape[:-1], self.n_classes)
        if ((y < 0) | (y >= self.n_classes)).any():
            raise VaekitError(f"label {int(y[(y < 0) | (y >= self.n_classes)][0])}: this conditional VAE knows labels 0 to {self.n_classes - 1}")
        return F.one_hot(y.long(), self.n_classes).to(like.dtype).expand(*like.shape[:-1], self.n_classes)

    def encode(self, x, y=None):
        flat = x.flatten(-self.event_ndim)  # (*batch, D)
        mu, log_var = self.encoder(torch.cat([flat, self._condition(y, flat)], -1)).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)

    def decode(self, z, y=None):
        return self.likelihood(self.decoder(torch.cat([z, self._condition(y, z)], -1)))


def build(cfg: ModelConfig) -> Autoencoder:
    """The model a resolved config describes (``input_shape`` and ``likelihood`` filled in)."""
    if cfg.input_shape is None or cfg.likelihood == "auto":
        raise ValueError("build() needs a resolved ModelConfig (input_shape and likelihood set)")
    shape = tuple(cfg.input_shape)
    lik = LIKELIHOODS[cfg.likelihood]
    if lik is Gaussian:
        likelihood = partial(Gaussian, event_ndim=len(shape), sigma=cfg.sigma, mean=cfg.gaussian_mean)
    elif lik is GaussianLearned:
        likelihood = partial(GaussianLearned, event_ndim=len(shape), mean=cfg.gaussian_mean)
    elif cfg.gaussian_mean != "linear":
        raise VaekitError(f"model.gaussian_mean={cfg.gaussian_mean!r} shapes a Gaussian decoder's mean; "
                          f"model.likelihood={cfg.likelihood!r} has none")
    else:
        likelihood = partial(lik, event_ndim=len(shape))
    bottom = cfg.stochastic_layers[0] if cfg.kind == "hvae" else cfg.latent_dim  # the layer that touches x
    code = 2 * bottom if cfg.kind in ("vae", "hvae", "cvae") else bottom
    if cfg.kind == "cvae":
        if cfg.net != "mlp" or not cfg.n_classes:
            raise VaekitError("model.kind=cvae needs model.net=mlp and labelled data (model.n_classes is set from it)")
        encoder = MLPEncoder((math.prod(shape) + cfg.n_classes,), cfg.hidden, 2 * cfg.latent_dim, cfg.activation)
        decoder = MLPDecoder(shape, cfg.hidden, cfg.latent_dim + cfg.n_classes, lik.n_params, cfg.activation)
    elif cfg.net == "mlp":
        encoder = MLPEncoder(shape, cfg.hidden, code, cfg.activation)
        decoder = MLPDecoder(shape, cfg.hidden, bottom, lik.n_params, cfg.activation)
    else:
        if cfg.kind == "hvae":
            raise VaekitError("model.kind=hvae is built from MLPs; use model.net=mlp")
        if len(shape) != 3:
            raise VaekitError(f"model.net=conv needs image data (C, H, W), but the data has rows of shape {shape}; use model.net=mlp")
        encoder = ConvEncoder(shape, cfg.channels, code, cfg.activation)
        decoder = ConvDecoder(shape, cfg.channels, cfg.latent_dim, lik.n_params, cfg.activation)
    if cfg.kind == "hvae":
        dims = (*cfg.stochastic_layers, cfg.latent_dim)  # bottom to top
        ups = nn.ModuleList(MLPEncoder((a,), cfg.upper_hidden, 2 * b, cfg.activation) for a, b in zip(dims, dims[1:]))
        downs = nn.ModuleList(MLPEncoder((b,), tuple(reversed(cfg.upper_hidden)), 2 * a, cfg.activation) for a, b in zip(dims, dims[1:]))
        model = HierarchicalVAE(encoder, decoder, likelihood, ups, downs, dims, cfg.beta, cfg.mc_samples, cfg.objective, cfg.iwae_k)
    elif cfg.kind == "cvae":
        model = ConditionalVAE(encoder, decoder, likelihood, cfg.latent_dim, cfg.n_classes, len(shape), cfg.beta, cfg.mc_samples,
                               cfg.objective, cfg.iwae_k, cfg.kl_estimator)
    elif cfg.kind == "vae":
        model = VAE(encoder, decoder, likelihood, cfg.latent_dim, cfg.beta, cfg.mc_samples, cfg.objective, cfg.iwae_k, cfg.kl_estimator,
                    cfg.estimator)
    elif cfg.kind == "dae":
        model = DenoisingAutoencoder(encoder, decoder, likelihood, cfg.corruption, cfg.noise)
    else:
        model = Autoencoder(encoder, decoder, likelihood)
    if cfg.init_std is not None:
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                nn.init.normal_(p, 0.0, cfg.init_std)
            else:
                nn.init.zeros_(p)
    return model


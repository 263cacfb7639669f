"""Autoencoder, DenoisingAutoencoder and VAE: encode / decode / reconstruct / loss(x) -> LossOutput.

One class per model and one ``loss`` contract, so the one trainer serves them all.
``build`` turns a resolved ModelConfig into a model; that is the only place where
configuration strings become classes.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .config import ModelConfig
from .data.corrupt import corrupt
from .distributions import LIKELIHOODS, DiagonalGaussian, Gaussian, Likelihood, PointMass, StandardNormal
from .errors import VaekitError
from .nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .objectives import LossOutput, negative_elbo


class Autoencoder(nn.Module):
    """Deterministic encoder g and decoder f; loss −log p(x | f(g(x))): BCE under Bernoulli, ½‖x − x̂‖² + c under Gaussian."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: partial):
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood

    def encode(self, x: torch.Tensor) -> PointMass:
        return PointMass(self.encoder(x))

    def decode(self, z: torch.Tensor) -> Likelihood:
        return self.likelihood(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).mean).mean

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0, generator: torch.Generator | None = None) -> LossOutput:
        rec = -self.decode(self.encode(x).mean).log_prob(x).mean()
        return LossOutput(rec, rec, torch.zeros((), device=x.device))


class DenoisingAutoencoder(Autoencoder):
    """Trained to reconstruct the clean x from a corrupted x̃ (Vincent et al., 2008)."""

    def __init__(self, encoder, decoder, likelihood, corruption: str, noise: float):
        super().__init__(encoder, decoder, likelihood)
        self.corruption, self.noise = corruption, noise

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.corruption, self.noise, generator)

    def loss(self, x, kl_weight=1.0, generator=None):
        rec = -self.decode(self.encode(self.corrupt(x, generator)).mean).log_prob(x).mean()
        return LossOutput(rec, rec, torch.zeros((), device=x.device))


class VAE(Autoencoder):
    """q(z|x) = N(μ(x), diag σ²(x)) from an encoder predicting (μ, log σ²); p(z) = N(0, I); loss −ELBO with weight β on the KL."""

    def __init__(self, encoder, decoder, likelihood, latent_dim: int, beta: float = 1.0, mc_samples: int = 1):
        super().__init__(encoder, decoder, likelihood)
        self.prior = StandardNormal(latent_dim)
        self.beta, self.mc_samples = beta, mc_samples

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """Decode z ~ N(0, I): the decoder's mean image by default, else a draw from p(x|z)."""
        device = next(self.parameters()).device
        p_x = self.decode(self.prior.sample(n, generator, device))
        return p_x.mean if mean else p_x.sample(generator)

    def loss(self, x, kl_weight=1.0, generator=None):
        q_z = self.encode(x)
        z = q_z.rsample(None if self.mc_samples == 1 else self.mc_samples, generator)
        return negative_elbo(self.decode(z), x, q_z, self.beta * kl_weight)


def build(cfg: ModelConfig) -> Autoencoder:
    """The model a resolved config describes (``input_shape`` and ``likelihood`` filled in)."""
    if cfg.input_shape is None or cfg.likelihood == "auto":
        raise ValueError("build() needs a resolved ModelConfig (input_shape and likelihood set)")
    shape = tuple(cfg.input_shape)
    lik = LIKELIHOODS[cfg.likelihood]
    likelihood = partial(Gaussian, event_ndim=len(shape), sigma=cfg.sigma) if lik is Gaussian else partial(lik, event_ndim=len(shape))
    code = 2 * cfg.latent_dim if cfg.kind == "vae" else cfg.latent_dim
    if cfg.net == "mlp":
        encoder = MLPEncoder(shape, cfg.hidden, code, cfg.activation)
        decoder = MLPDecoder(shape, cfg.hidden, cfg.latent_dim, lik.n_params, cfg.activation)
    else:
        if len(shape) != 3:
            raise VaekitError(f"model.net=conv needs image data (C, H, W), but the data has rows of shape {shape}; use model.net=mlp")
        encoder = ConvEncoder(shape, cfg.channels, code, cfg.activation)
        decoder = ConvDecoder(shape, cfg.channels, cfg.latent_dim, lik.n_params, cfg.activation)
    if cfg.kind == "vae":
        model = VAE(encoder, decoder, likelihood, cfg.latent_dim, cfg.beta, cfg.mc_samples)
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


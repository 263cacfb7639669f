"""The VAE: a diagonal Gaussian posterior from any encoder, a prior by name or object, any likelihood."""
from __future__ import annotations

from typing import Any

import torch

from .. import registry
from ..distributions import DiagonalGaussian, closed_form_kl
from ..errors import VaekitError
from ..config import CUSTOM
from .autoencoder import Autoencoder, _likelihood_options, _nets


@registry.register("model", "vae")
class VAE(Autoencoder):
    """q(z|x) = N(μ(x), diag σ²(x)) from an encoder predicting (μ, log σ²); p(z) the prior (N(0, I) unless named).

    ``prior`` is a registered name, or an object with ``log_prob(z)`` and ``sample(n, generator)``; one that is an
    ``nn.Module`` is trained and saved with the model.
    """

    default_objective = "elbo"
    config_keys = frozenset({"prior"})
    variational = True

    def __init__(self, encoder, decoder, likelihood="bernoulli", *, latent_dim, prior: Any = "standard-normal",
                 input_shape=None, likelihood_options=None):
        super().__init__(encoder, decoder, likelihood, latent_dim=latent_dim, input_shape=input_shape, likelihood_options=likelihood_options)
        self.prior = registry.lookup("prior", prior)(latent_dim) if isinstance(prior, str) else prior

    @classmethod
    def from_config(cls, cfg):
        encoder, decoder = _nets(cfg, 2 * cfg.latent_dim, cfg.latent_dim)
        return cls(encoder, decoder, cfg.likelihood, latent_dim=cfg.latent_dim, prior=cfg.prior, input_shape=cfg.input_shape,
                   likelihood_options=_likelihood_options(cfg))

    def _own_config(self):
        return {"prior": registry.name_of("prior", type(self.prior)) or CUSTOM}

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian:
        """q(z|x) = N(μ(x), diag σ²(x))."""
        out = self._encoder_out(x, y)
        if out.shape[-1] != 2 * self.latent_dim:
            raise VaekitError(f"the encoder gives {out.shape[-1]} numbers per example; a VAE with latent_dim={self.latent_dim} "
                              f"needs {2 * self.latent_dim} (μ and log σ² of each unit)")
        mu, log_var = out.chunk(2, dim=-1)
        return DiagonalGaussian(mu, log_var)

    def draw_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ p(z) on the model's device: (n, latent_dim)."""
        return self.prior.sample(n, generator).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode z ~ p(z): the decoder's mean image by default, else a draw from p(x|z)."""
        p_x = self.decode(self.draw_prior(n, generator), y)
        return p_x.mean if mean else p_x.sample(generator)

    def sampled_terms(self, x: torch.Tensor, n: int | None, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
                      spent: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(−log p(x|z), log q(z|x) − log p(z)) for n draws z ~ q(z|x): (n, B) each, or (B,) when n is None.
        ``spent``: the decodes are thrown away afterwards (evaluation), so the likelihood may work in place."""
        q_z = self.encode(x, y)
        z = q_z.rsample(n, generator)  # (n, B, k)
        p_x = self.decode(z, y)
        return -(p_x.log_prob_(x) if spent else p_x.log_prob(x)), q_z.log_prob(z) - self.prior.log_prob(z)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample −log p(x|z) and the KL per example (closed form where there is one): (B,), (B,)."""
        q_z = self.encode(x, y)
        z = q_z.rsample(None, generator)
        kl = closed_form_kl(q_z, self.prior)
        return -self.decode(z, y).log_prob(x), q_z.log_prob(z) - self.prior.log_prob(z) if kl is None else kl

    def log_weights(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, z_k) − log q(z_k|x) for n draws z_k ~ q(z|x): (n, B). For evaluation: the decodes are spent."""
        rec, log_ratio = self.sampled_terms(x, n, generator, y, spent=True)
        return -rec - log_ratio

    def prior_log_likelihoods(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None,
                              y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z_k) for n draws z_k ~ p(z) per example: (n, B). For evaluation: the decodes are spent."""
        z = self.draw_prior(n * len(x), generator).view(n, len(x), -1)
        return self.decode(z, y).log_prob_(x)



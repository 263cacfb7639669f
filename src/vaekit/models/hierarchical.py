"""The hierarchical VAE: stochastic layers below z, each a diagonal Gaussian (Burda et al., 2015)."""
from __future__ import annotations

import torch
from torch import nn

from .. import registry
from ..distributions import DiagonalGaussian, Likelihood
from ..errors import VaekitError
from ..nets import MLPEncoder
from .autoencoder import _likelihood_options, _nets
from .vae import VAE, part_from_config


def _gaussian(params: torch.Tensor) -> DiagonalGaussian:
    mu, log_var = params.chunk(2, dim=-1)
    return DiagonalGaussian(mu, log_var)


@registry.register("model", "hvae")
class HierarchicalVAE(VAE):
    """Stochastic layers z1 … zL: p(x|z1) p(z1|z2) … p(zL), q(z1|x) q(z2|z1) … (Burda et al., 2015).

    ``encoder``/``decoder`` connect x and z1; ``ups[l]`` gives q(z_{l+2}|z_{l+1}) and ``downs[l]``
    gives p(z_{l+1}|z_{l+2}), each a diagonal Gaussian. The KL terms have no closed form, so the
    ELBO is estimated with samples. The latent space the explore commands see is the top layer:
    ``encode`` passes posterior means up, ``decode`` passes prior means down.
    """

    hierarchical = True
    config_keys = frozenset({"prior", "stochastic_layers", "upper_hidden"})

    def __init__(self, encoder, decoder, likelihood, ups: nn.ModuleList, downs: nn.ModuleList, *, latent_dims: tuple[int, ...],
                 prior="standard-normal", input_shape=None, likelihood_options=None):
        super().__init__(encoder, decoder, likelihood, latent_dim=latent_dims[-1], prior=prior, input_shape=input_shape,
                         likelihood_options=likelihood_options)
        self.ups, self.downs, self.latent_dims = ups, downs, tuple(latent_dims)

    @classmethod
    def from_config(cls, cfg):
        if cfg.net != "mlp":
            raise VaekitError("model.kind=hvae is built from MLPs; use model.net=mlp")
        encoder, decoder = _nets(cfg, 2 * cfg.stochastic_layers[0], cfg.stochastic_layers[0])
        dims = (*cfg.stochastic_layers, cfg.latent_dim)  # bottom to top
        ups = nn.ModuleList(MLPEncoder((a,), cfg.upper_hidden, 2 * b, cfg.activation) for a, b in zip(dims, dims[1:]))
        downs = nn.ModuleList(MLPEncoder((b,), tuple(reversed(cfg.upper_hidden)), 2 * a, cfg.activation) for a, b in zip(dims, dims[1:]))
        return cls(encoder, decoder, cfg.likelihood, ups, downs, latent_dims=dims, prior=part_from_config("prior", cfg),
                   input_shape=cfg.input_shape,
                   likelihood_options=_likelihood_options(cfg))

    def _own_config(self):
        return {**super()._own_config(), "stochastic_layers": self.latent_dims[:-1]}

    def _bottom(self, x: torch.Tensor) -> DiagonalGaussian:
        return _gaussian(self._encoder_out(x, None))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian:
        q = self._bottom(x)
        for up in self.ups:
            q = _gaussian(up(q.mean))
        return q

    def _to_bottom(self, z: torch.Tensor) -> torch.Tensor:
        for down in reversed(self.downs):
            z = _gaussian(down(z)).mean
        return z

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Likelihood:
        self._check_z(z)
        return self._likelihood_at(self._to_bottom(z))

    def _likelihood_at(self, z1: torch.Tensor) -> Likelihood:
        out = self._decoder_params(self.decoder(z1.reshape(-1, z1.shape[-1])), z1.shape[:-1])
        return self.likelihood(out, self.event_ndim, **self.likelihood_options)

    def sampled_terms(self, x, n, generator=None, y=None, spent=False):
        """(−log p(x|z1), Σ_l log q(z_l|z_{l−1}) − log p(z_l|z_{l+1})) for n draws of the chain: (n, B) each, or (B,)."""
        q = self._bottom(x)
        z = q.rsample(n, generator)
        zs, log_q = [z], q.log_prob(z)
        for up in self.ups:
            q = _gaussian(up(z))
            z = q.rsample(None, generator)
            zs.append(z)
            log_q = log_q + q.log_prob(z)
        log_p = self.prior.log_prob(zs[-1])
        for lower, upper, down in zip(zs, zs[1:], self.downs):
            log_p = log_p + _gaussian(down(upper)).log_prob(lower)
        p_x = self._likelihood_at(zs[0])
        return -(p_x.log_prob_(x) if spent else p_x.log_prob(x)), log_q - log_p

    def elbo_terms(self, x, generator=None, y=None):
        return self.sampled_terms(x, None, generator)

    def prior_log_likelihoods(self, x, n, generator=None, y=None):
        z = self.draw_prior(n * len(x), generator).view(n, len(x), -1)
        for down in reversed(self.downs):  # ancestral sampling down the layers
            z = _gaussian(down(z)).rsample(None, generator)
        return self._likelihood_at(z).log_prob_(x)



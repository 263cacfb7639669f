"""The conditional VAE: encoder and decoder both see a label or an attribute vector (Sohn et al., 2015)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import registry
from ..errors import VaekitError
from ..nets import MLPDecoder, MLPEncoder
from .autoencoder import _likelihood_class, _likelihood_options
from .vae import VAE, part_from_config


@registry.register("model", "cvae")
class ConditionalVAE(VAE):
    """q(z|x, y) and p(x|z, y) with y a class label fed to both as a one-hot vector, or an attribute
    vector as it is (Sohn et al., 2015); p(z) stays unconditional, so z carries what the condition
    does not: the style. The encoder takes (N, D + n_classes), x flattened beside the condition;
    the decoder (N, latent_dim + n_classes)."""

    conditional = True

    def __init__(self, encoder, decoder, likelihood="bernoulli", *, latent_dim, n_classes: int, prior="standard-normal",
                 posterior="gaussian", input_shape=None, likelihood_options=None):
        self.n_classes = n_classes  # before the prior is bound, which asks what the model is conditioned on
        super().__init__(encoder, decoder, likelihood, latent_dim=latent_dim, prior=prior, posterior=posterior,
                         input_shape=input_shape, likelihood_options=likelihood_options)

    @classmethod
    def from_config(cls, cfg):
        if cfg.net != "mlp" or not cfg.n_classes:
            raise VaekitError("model.kind=cvae needs model.net=mlp and labelled data (model.n_classes is set from it)")
        shape, lik = tuple(cfg.input_shape), _likelihood_class(cfg.likelihood)
        posterior = part_from_config("posterior", cfg)
        encoder = MLPEncoder((math.prod(shape) + cfg.n_classes,), cfg.hidden, posterior.n_inputs, cfg.activation)
        decoder = MLPDecoder(shape, cfg.hidden, cfg.latent_dim + cfg.n_classes, lik.n_params, cfg.activation)
        return cls(encoder, decoder, cfg.likelihood, latent_dim=cfg.latent_dim, n_classes=cfg.n_classes,
                   prior=part_from_config("prior", cfg), posterior=posterior, input_shape=shape,
                   likelihood_options=_likelihood_options(cfg))

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

    def _encoder_out(self, x, y):
        self._check_x(x)
        flat = x.flatten(x.dim() - self.event_ndim)  # (*batch, D)
        h = torch.cat([flat, self._condition(y, flat)], -1)
        return self.encoder(h.reshape(-1, h.shape[-1])).reshape(*flat.shape[:-1], -1)

    def _decoder_out(self, z, y):
        self._check_z(z)
        h = torch.cat([z, self._condition(y, z)], -1)
        return self._decoder_params(self.decoder(h.reshape(-1, h.shape[-1])), z.shape[:-1])



"""The VAE: a diagonal Gaussian posterior from any encoder, a prior by name or object, any likelihood."""
from __future__ import annotations

from typing import Any

import torch

from .. import registry
from ..distributions import closed_form_kl
from ..errors import VaekitError
from ..config import CUSTOM
from .autoencoder import Autoencoder, _likelihood_options, _nets


def part_from_config(kind: str, cfg: Any) -> Any:
    """The prior or posterior a ModelConfig names, built with the ModelConfig keys its class reads."""
    cls = registry.lookup(kind, getattr(cfg, kind), f"model.{kind}")
    return cls(cfg.latent_dim, **{key: getattr(cfg, key) for key in getattr(cls, "config_keys", ())})


def _part_config(kind: str, part: Any) -> dict[str, Any]:
    """The ModelConfig values naming a prior or posterior built by hand, and its settings."""
    cls = type(part)
    name = registry.name_of(kind, cls)
    return {kind: name or CUSTOM, **({key: getattr(part, key) for key in getattr(cls, "config_keys", ())} if name else {})}


@registry.register("model", "vae")
class VAE(Autoencoder):
    """q(z|x) from any encoder (a diagonal Gaussian unless a flow is named); p(z) the prior (N(0, I) unless named).

    ``prior`` and ``posterior`` are registered names or objects. A prior has ``log_prob(z)`` and
    ``sample(n, generator)``; one that is an ``nn.Module`` is trained and saved with the model, and one with a
    ``bind(model)`` method is bound to the model once built (the VampPrior uses the model's encoder). A posterior is
    an ``nn.Module`` whose ``n_inputs`` is the number of encoder outputs per example it reads and which, called on
    them, gives q(z|x): ``gaussian`` reads (μ, log σ²), the flows ``planar`` and ``iaf`` also a context h.
    """

    default_objective = "elbo"
    config_keys = frozenset({"prior", "posterior"})
    variational = True

    def __init__(self, encoder, decoder, likelihood="bernoulli", *, latent_dim, prior: Any = "standard-normal",
                 posterior: Any = "gaussian", input_shape=None, likelihood_options=None):
        super().__init__(encoder, decoder, likelihood, latent_dim=latent_dim, input_shape=input_shape, likelihood_options=likelihood_options)
        self.posterior = registry.lookup("posterior", posterior, "posterior")(latent_dim) if isinstance(posterior, str) else posterior
        self.prior = registry.lookup("prior", prior, "prior")(latent_dim) if isinstance(prior, str) else prior
        bind = getattr(self.prior, "bind", None)
        if bind is not None:
            bind(self)

    @classmethod
    def from_config(cls, cfg):
        posterior = part_from_config("posterior", cfg)
        encoder, decoder = _nets(cfg, posterior.n_inputs, cfg.latent_dim)
        return cls(encoder, decoder, cfg.likelihood, latent_dim=cfg.latent_dim, prior=part_from_config("prior", cfg),
                   posterior=posterior, input_shape=cfg.input_shape, likelihood_options=_likelihood_options(cfg))

    def _own_config(self):
        return {**_part_config("prior", self.prior), **_part_config("posterior", self.posterior)}

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """q(z|x): what the posterior makes of the encoder's output."""
        out = self._encoder_out(x, y)
        if out.shape[-1] != self.posterior.n_inputs:
            reads = getattr(self.posterior, "reads", f"for its {type(self.posterior).__name__} posterior")
            raise VaekitError(f"the encoder gives {out.shape[-1]} numbers per example; a VAE with latent_dim={self.latent_dim} "
                              f"needs {self.posterior.n_inputs} ({reads})")
        return self.posterior(out)

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



"""Autoencoder, DenoisingAutoencoder, VAE, HierarchicalVAE and ConditionalVAE: encode / decode / reconstruct / sample.

A model is built from any encoder and decoder ``nn.Module`` and declares what it is
(``latent_dim``, ``input_shape``, ``conditional``, ``n_classes``, ``prior``, ``hierarchical``,
``device``); it is trained on ``model.objective`` (an object of ``vaekit.objectives``), which
``model(x)`` and ``model.loss(x)`` evaluate. The user's encoder and decoder see one batch
dimension: an encoder maps (N, *input_shape) to the posterior's parameters, (N, 2·latent_dim)
for a VAE; a decoder maps (N, latent_dim) to the likelihood's, (N, n_params, *input_shape) or,
with one parameter per element, (N, *input_shape). Every model kind is registered by name and
has ``from_config``; ``build`` turns a ModelConfig into a model by that name.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .config import Config, ModelConfig
from .data.corrupt import corrupt
from .distributions import DiagonalGaussian, Likelihood, PointMass, closed_form_kl
from .errors import VaekitError
from .nets import MLPDecoder, MLPEncoder
from .objectives import LossOutput, Objective

CUSTOM = "custom"  # a part that has no registered name: the run loads with vaekit.load(dir, model=...)


def _likelihood_class(likelihood: str | type) -> type:
    return registry.lookup("likelihood", likelihood) if isinstance(likelihood, str) else likelihood


@registry.register("model", "ae")
class Autoencoder(nn.Module):
    """Deterministic encoder g and decoder f; loss −log p(x | f(g(x))): BCE under Bernoulli, ½‖x − x̂‖² + c under Gaussian."""

    default_objective = "reconstruction"  # the objective's registered name when none is given
    config_keys: frozenset[str] = frozenset()  # ModelConfig keys this kind reads beyond every model's
    variational = False  # a posterior q(z|x) and a prior p(z)
    conditional = False
    hierarchical = False
    n_classes: int | None = None
    corruption: str | None = None  # a denoising autoencoder's corruption and its level
    noise: float | None = None

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: str | type = "bernoulli", *, latent_dim: int,
                 input_shape: tuple[int, ...] | None = None, likelihood_options: dict[str, Any] | None = None):
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise VaekitError(f"latent_dim={latent_dim!r}: expected a positive integer")
        self.encoder, self.decoder = encoder, decoder
        self.likelihood: type = _likelihood_class(likelihood)
        self.likelihood_options = dict(likelihood_options or {})
        self.latent_dim = latent_dim
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.prior: Any = None
        self.objective: Objective = registry.lookup("objective", self.default_objective)()
        self.config: Config | None = None  # the run's resolved config, once the model is fitted or loaded
        self.spec: ModelConfig | None = None  # the ModelConfig it was built from, if any

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "Autoencoder":
        """The model a resolved ModelConfig describes (``input_shape`` and ``likelihood`` filled in)."""
        encoder, decoder = _nets(cfg, cfg.latent_dim, cfg.latent_dim)
        return cls(encoder, decoder, cfg.likelihood, latent_dim=cfg.latent_dim, input_shape=cfg.input_shape,
                   likelihood_options=_likelihood_options(cfg))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def event_ndim(self) -> int:
        return len(self._shape())

    def _shape(self) -> tuple[int, ...]:
        if self.input_shape is None:
            raise VaekitError(f"this {type(self).__name__} does not know the shape of its inputs yet: give input_shape= "
                              "or fit it on data first")
        return self.input_shape

    def _check_x(self, x: torch.Tensor) -> None:
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])  # the first data the model sees fixes it
        n = len(self.input_shape)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or tuple(x.shape[x.dim() - n:]) != self.input_shape or x.dim() <= n:
            what = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise VaekitError(f"encode: x has {what}; this model takes float tensors of shape (batch, {', '.join(map(str, self.input_shape))})")

    def _check_z(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.dim() < 1 or z.shape[-1] != self.latent_dim:
            what = f"shape {tuple(z.shape)}, dtype {z.dtype}" if isinstance(z, torch.Tensor) else type(z).__name__
            raise VaekitError(f"decode: z has {what}; this model takes float tensors of shape (batch, {self.latent_dim})")

    def _encoder_out(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The encoder's output for x (*batch, *shape): (*batch, out); the encoder sees one batch dimension."""
        self._check_x(x)
        batch = x.shape[:x.dim() - self.event_ndim]
        return self.encoder(x.reshape(-1, *self.input_shape)).reshape(*batch, -1)

    def _decoder_params(self, out: torch.Tensor, batch: torch.Size) -> torch.Tensor:
        """A decoder output (N, ...) as the likelihood's parameters (*batch, P, *shape)."""
        shape, p = self._shape(), self.likelihood.n_params
        per = tuple(out.shape[1:])
        if per == (p, *shape) or (p == 1 and per == shape):
            return out.reshape(*batch, p, *shape)
        raise VaekitError(f"the decoder gives outputs of shape {per} per example; the {self.likelihood.__name__} likelihood "
                          f"needs ({p}, {', '.join(map(str, shape))})" + (f" or {shape}" if p == 1 else ""))

    def _decoder_out(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        self._check_z(z)
        batch = z.shape[:-1]
        return self._decoder_params(self.decoder(z.reshape(-1, z.shape[-1])), batch)

    # ``y`` (labels) matters only to a conditional model; every model takes it so callers need not ask which they hold
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> PointMass:
        """The code of x: a point mass at g(x)."""
        return PointMass(self._encoder_out(x, y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Likelihood:
        """p(x|z), the likelihood object for the decoder's output."""
        return self.likelihood(self._decoder_out(z, y), self.event_ndim, **self.likelihood_options)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The input the encoder is trained on: x itself (a denoising autoencoder corrupts it)."""
        return x

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean at the code's mean."""
        return self.decode(self.encode(x, y).mean, y).mean

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0, generator: torch.Generator | None = None,
             y: torch.Tensor | None = None) -> LossOutput:
        """``self.objective`` on a batch: LossOutput(loss, recon, kl), means over the batch in nats."""
        return self.objective(self, x, kl_weight=kl_weight, generator=generator, y=y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LossOutput:
        """``model(x)`` is ``model.loss(x)``: the LossOutput of the model's objective."""
        return self.loss(x, y=y)

    def describe(self) -> ModelConfig:
        """The ModelConfig that rebuilds this model; parts without a registered name are written as "custom"."""
        objective = self.objective
        name = registry.name_of("objective", type(objective)) or getattr(objective, "config_name", None)
        if self.spec is not None:
            base = self.spec
        else:
            base = ModelConfig(kind=registry.name_of("model", type(self)) or CUSTOM, net=CUSTOM,
                               likelihood=registry.name_of("likelihood", self.likelihood) or CUSTOM,
                               prior=self._prior_name(), latent_dim=self.latent_dim)
            opts = {k: v for k, v in self.likelihood_options.items() if k in ("sigma",)}
            if "mean" in self.likelihood_options:
                opts["gaussian_mean"] = self.likelihood_options["mean"]
            base = replace(base, **opts)
        values = {f: getattr(ModelConfig, f) for f in ("beta", "mc_samples", "kl_estimator", "estimator", "iwae_k")}
        values.update(objective.to_config() if name else {})
        return replace(base, objective=name or "auto", input_shape=self.input_shape, n_classes=self.n_classes, **values)

    def _prior_name(self) -> str:
        return "standard-normal"


def _nets(cfg: ModelConfig, code_dim: int, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    if cfg.net == CUSTOM:
        raise VaekitError("model.net='custom': the networks were built by hand; load the run with vaekit.load(dir, model=...)")
    if cfg.input_shape is None or cfg.likelihood == "auto":
        raise VaekitError("building a model from a ModelConfig needs it resolved (model.input_shape and model.likelihood set)")
    return registry.lookup("net", cfg.net)(cfg, code_dim, latent_dim, _likelihood_class(cfg.likelihood).n_params)


def _likelihood_options(cfg: ModelConfig) -> dict[str, Any]:
    return _likelihood_class(cfg.likelihood).options(cfg)


@registry.register("model", "dae")
class DenoisingAutoencoder(Autoencoder):
    """Trained to reconstruct the clean x from a corrupted x̃ (Vincent et al., 2008)."""

    config_keys = frozenset({"corruption", "noise"})

    def __init__(self, encoder, decoder, likelihood="bernoulli", *, latent_dim, corruption: str = "gaussian", noise: float = 0.3,
                 input_shape=None, likelihood_options=None):
        super().__init__(encoder, decoder, likelihood, latent_dim=latent_dim, input_shape=input_shape, likelihood_options=likelihood_options)
        self.corruption, self.noise = corruption, noise

    @classmethod
    def from_config(cls, cfg):
        encoder, decoder = _nets(cfg, cfg.latent_dim, cfg.latent_dim)
        return cls(encoder, decoder, cfg.likelihood, latent_dim=cfg.latent_dim, corruption=cfg.corruption, noise=cfg.noise,
                   input_shape=cfg.input_shape, likelihood_options=_likelihood_options(cfg))

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.corruption, self.noise, generator)


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

    def _prior_name(self) -> str:
        return registry.name_of("prior", type(self.prior)) or CUSTOM

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
        return cls(encoder, decoder, cfg.likelihood, ups, downs, latent_dims=dims, prior=cfg.prior, input_shape=cfg.input_shape,
                   likelihood_options=_likelihood_options(cfg))

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


@registry.register("model", "cvae")
class ConditionalVAE(VAE):
    """q(z|x, y) and p(x|z, y) with y a class label fed to both as a one-hot vector, or an attribute
    vector as it is (Sohn et al., 2015); p(z) stays unconditional, so z carries what the condition
    does not: the style. The encoder takes (N, D + n_classes), x flattened beside the condition;
    the decoder (N, latent_dim + n_classes)."""

    conditional = True

    def __init__(self, encoder, decoder, likelihood="bernoulli", *, latent_dim, n_classes: int, prior="standard-normal",
                 input_shape=None, likelihood_options=None):
        super().__init__(encoder, decoder, likelihood, latent_dim=latent_dim, prior=prior, input_shape=input_shape,
                         likelihood_options=likelihood_options)
        self.n_classes = n_classes

    @classmethod
    def from_config(cls, cfg):
        if cfg.net != "mlp" or not cfg.n_classes:
            raise VaekitError("model.kind=cvae needs model.net=mlp and labelled data (model.n_classes is set from it)")
        shape, lik = tuple(cfg.input_shape), _likelihood_class(cfg.likelihood)
        encoder = MLPEncoder((math.prod(shape) + cfg.n_classes,), cfg.hidden, 2 * cfg.latent_dim, cfg.activation)
        decoder = MLPDecoder(shape, cfg.hidden, cfg.latent_dim + cfg.n_classes, lik.n_params, cfg.activation)
        return cls(encoder, decoder, cfg.likelihood, latent_dim=cfg.latent_dim, n_classes=cfg.n_classes, prior=cfg.prior,
                   input_shape=shape, likelihood_options=_likelihood_options(cfg))

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


def build(cfg: ModelConfig) -> Autoencoder:
    """The model a resolved config describes: its kind's ``from_config``, the initialization it names, its objective."""
    if cfg.kind == CUSTOM:
        raise VaekitError("model.kind='custom': the model's class has no registered name; load the run with vaekit.load(dir, model=...)")
    model = registry.lookup("model", cfg.kind).from_config(cfg)
    if cfg.init_std is not None:
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                nn.init.normal_(p, 0.0, cfg.init_std)
            else:
                nn.init.zeros_(p)
    model.objective = objective_from_config(cfg)
    model.spec = cfg
    return model


def objective_from_config(cfg: ModelConfig) -> Objective:
    """The objective object ``model.objective`` (and its keys) name; "auto" is the model kind's own."""
    return registry.lookup("objective", cfg.objective_name).from_config(cfg)


def use_objective(model: Autoencoder, objective: Objective | str | None) -> None:
    """Set the objective ``model`` trains on (a name is built with its defaults), refusing one that does not apply."""
    if objective is None:
        objective = model.objective
    elif isinstance(objective, str):
        objective = registry.lookup("objective", objective)()
    reason = objective.refusal(model) if isinstance(objective, Objective) else None
    if reason:
        raise VaekitError(reason)
    model.objective = objective

"""The plain and the denoising autoencoder, and what every model shares: the encoder and decoder adapters,
the declarations (``latent_dim``, ``input_shape``, ``conditional``, ...), ``loss``/``forward`` through the
objective, and ``describe`` for config.json."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .. import registry
from ..config import CUSTOM, Config, ModelConfig
from ..data.corrupt import corrupt
from ..distributions import Likelihood, PointMass
from ..errors import VaekitError
from ..objectives import LossOutput, Objective



def _likelihood_class(likelihood: str | type) -> type:
    """A likelihood by registered name, or the class itself."""
    if isinstance(likelihood, str):
        return registry.lookup("likelihood", likelihood, "likelihood")
    if not isinstance(likelihood, type):
        raise VaekitError(f"likelihood={likelihood!r}: expected a registered name or a class such as vaekit.distributions.Bernoulli")
    return likelihood


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
        self.input_shape = _shape_of(input_shape)
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

    def init_output_bias(self, data_mean: torch.Tensor, data_var: torch.Tensor) -> None:
        """Set the decoder's output bias so that p(x|z) starts at the data's per-element mean (and variance, for a
        learned-variance Gaussian), as Burda et al.'s code does: the weights then learn what z adds to the mean."""
        set_bias = getattr(self.decoder, "set_output_bias", None)
        if set_bias is None:
            raise VaekitError(f"model.init_output_bias: the decoder {type(self.decoder).__name__} has no "
                              "set_output_bias(params) method, so vaekit cannot tell which bias is its output's")
        try:
            params = self.likelihood.params_at(data_mean, data_var, **self.likelihood_options)
        except NotImplementedError as e:
            raise VaekitError(f"model.init_output_bias: {e}") from None
        set_bias(params.to(self.device))

    @property
    def device(self) -> torch.device:
        """The device the model's parameters are on."""
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def event_ndim(self) -> int:
        """The number of dimensions of one example (3 for images, 1 for tables)."""
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
        base = self.spec or ModelConfig(kind=registry.name_of("model", type(self)) or CUSTOM, net=CUSTOM,
                                        likelihood=registry.name_of("likelihood", self.likelihood) or CUSTOM,
                                        latent_dim=self.latent_dim, **self.likelihood.config_values(self.likelihood_options),
                                        **self._own_config())
        values = {f: getattr(ModelConfig, f) for f in ("beta", "mc_samples", "kl_estimator", "estimator", "iwae_k")}
        values.update(objective.to_config() if name else {})  # an objective without a name trains with its defaults
        return replace(base, objective=name or "auto", input_shape=self.input_shape, n_classes=self.n_classes, **values)

    def _own_config(self) -> dict[str, Any]:
        """The ModelConfig values of this kind's own settings, for a model built by hand."""
        return {}


def _shape_of(shape: Any) -> tuple[int, ...] | None:
    """input_shape as a tuple of positive ints (an int n is (n,)), or None."""
    if shape is None:
        return None
    shape = (shape,) if isinstance(shape, int) else shape
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise VaekitError(f"input_shape={shape!r}: expected the shape of one example, such as (1, 28, 28) or (784,)") from None
    if not shape or min(shape) < 1:
        raise VaekitError(f"input_shape={shape!r}: expected positive sizes")
    return shape


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

    def _own_config(self):
        return {"corruption": self.corruption, "noise": self.noise}



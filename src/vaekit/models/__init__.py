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

import torch
from torch import nn

from .. import registry
from ..config import ModelConfig
from ..errors import VaekitError
from ..limits import check_fits
from ..objectives import Objective
from ..config import CUSTOM
from .autoencoder import Autoencoder, DenoisingAutoencoder
from .vae import VAE
from .hierarchical import HierarchicalVAE  # noqa: I001 (registration order is the order names are listed in)
from .conditional import ConditionalVAE


def build(cfg: ModelConfig) -> Autoencoder:
    """The model a resolved config describes: its kind's ``from_config``, the initialization it names, its objective."""
    if cfg.kind == CUSTOM:
        raise VaekitError("model.kind='custom': the model's class has no registered name; load the run with vaekit.load(dir, model=...)")
    kind = registry.lookup("model", cfg.kind)
    with torch.device("meta"):  # counted before anything is allocated
        size = sum(p.numel() * p.element_size() for p in kind.from_config(cfg).parameters())
    check_fits(size, f"the model's weights ({cfg.kind}, model.latent_dim={cfg.latent_dim}, model.hidden={list(cfg.hidden)})",
               "choose a smaller model.latent_dim or model.hidden")
    model = kind.from_config(cfg)
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


__all__ = ["CUSTOM", "Autoencoder", "ConditionalVAE", "DenoisingAutoencoder", "HierarchicalVAE", "VAE", "build",
           "objective_from_config", "use_objective"]

"""Architectures and recipes of the literature by name, each with where it comes from."""
from __future__ import annotations

import json
from typing import Any

from .errors import VaekitError


# Architectures of the literature by name: (where it comes from, the config values it sets).
# A preset is applied first; flags and --set given with it still override it.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "pytorch-example": (
        "pytorch/examples vae/main.py: 784-400-20 ReLU MLP, BCE on grey-level MNIST, Adam 1e-3, batch 128, 10 epochs",
        {"data.name": "mnist", "data.binarize": "none", "model.kind": "vae", "model.net": "mlp", "model.hidden": [400],
         "model.activation": "relu", "model.latent_dim": 20, "model.likelihood": "bernoulli",
         "train.optimizer": "adam", "train.lr": 1e-3, "train.batch_size": 128, "train.epochs": 10}),
    "aevb-mnist": (
        "Kingma & Welling (2013), section 5 and appendix C: 500 tanh units in encoder and decoder, Bernoulli decoder, "
        "Adagrad (step size from {0.01, 0.02, 0.1}), M = 100, L = 1, weights from N(0, 0.01^2), "
        "weight decay 1/N from an N(0, I) prior on the weights",
        {"data.name": "mnist", "model.kind": "vae", "model.net": "mlp", "model.hidden": [500], "model.activation": "tanh",
         "model.latent_dim": 20, "model.likelihood": "bernoulli", "model.init_std": 0.01, "model.mc_samples": 1,
         "train.optimizer": "adagrad", "train.lr": 0.02, "train.batch_size": 100, "train.weight_decay": 2e-5}),
    "aevb-frey": (
        "Kingma & Welling (2013), section 5 and appendix C: Frey Face, 200 tanh units, Gaussian decoder with learned "
        "variance and its means squashed into (0, 1) by a sigmoid, Adagrad, M = 100, L = 1, weights from N(0, 0.01^2), "
        "weight decay 1/N",
        {"data.name": "frey-face", "model.kind": "vae", "model.net": "mlp", "model.hidden": [200], "model.activation": "tanh",
         "model.latent_dim": 10, "model.likelihood": "gaussian-learned", "model.gaussian_mean": "sigmoid",
         "model.init_std": 0.01, "model.mc_samples": 1,
         "train.optimizer": "adagrad", "train.lr": 0.02, "train.batch_size": 100, "train.weight_decay": 6e-4}),
    "iwae-1layer": (
        "Burda, Grosse & Salakhutdinov (2015), section 5 and their code: one stochastic layer of 50 units under two "
        "deterministic layers of 200 tanh units (784-200-200-50), Bernoulli decoder whose output bias starts at the "
        "logit of the pixel means, dynamically binarized MNIST, Adam with ε = 1e-4, batch 20, 3,280 epochs of the "
        "stepped schedule lr = 1e-3·10^(−i/7) for 3^i epochs, i = 0…7 (scaled to --epochs or --time-budget)",
        {"data.name": "mnist", "data.binarize": "dynamic", "model.kind": "vae", "model.net": "mlp", "model.hidden": [200, 200],
         "model.activation": "tanh", "model.latent_dim": 50, "model.likelihood": "bernoulli", "model.init_output_bias": True,
         "train.optimizer": "adam", "train.lr": 1e-3, "train.eps": 1e-4, "train.batch_size": 20, "train.schedule": "burda",
         "train.epochs": 3280}),
    "iwae-2layer": (
        "Burda, Grosse & Salakhutdinov (2015), section 5 and their code: two stochastic layers, 784-200-200-100 (z1) "
        "and 100-100-50 (z2), deterministic layers of tanh units, Bernoulli decoder whose output bias starts at the "
        "logit of the pixel means, dynamically binarized MNIST, Adam with ε = 1e-4, batch 20, 3,280 epochs of the "
        "stepped schedule (scaled to --epochs or --time-budget)",
        {"data.name": "mnist", "data.binarize": "dynamic", "model.kind": "hvae", "model.net": "mlp", "model.hidden": [200, 200],
         "model.stochastic_layers": [100], "model.upper_hidden": [100, 100], "model.activation": "tanh", "model.latent_dim": 50,
         "model.likelihood": "bernoulli", "model.init_output_bias": True, "train.optimizer": "adam", "train.lr": 1e-3,
         "train.eps": 1e-4, "train.batch_size": 20, "train.schedule": "burda", "train.epochs": 3280}),
    "fast-mnist": (
        "vaekit's 10-minute MNIST recipe: Burda et al.'s 784-200-200-50 tanh VAE on dynamically binarized MNIST "
        "(59,000 training images), its output bias at the logit of the pixel means, Adam with ε = 1e-4 at batch 100, "
        "a cosine schedule from 1e-3 to 1e-5 stretched over a 10-minute time budget (the recipe of issue 17's check)",
        {"data.name": "mnist", "data.binarize": "dynamic", "data.val_size": 1000, "model.kind": "vae", "model.net": "mlp",
         "model.hidden": [200, 200], "model.activation": "tanh", "model.latent_dim": 50, "model.likelihood": "bernoulli",
         "model.init_output_bias": True, "train.optimizer": "adam", "train.lr": 1e-3, "train.eps": 1e-4,
         "train.batch_size": 100, "train.schedule": "cosine", "train.lr_min": 1e-5, "train.time_budget": 600}),
    "conv-28": (
        "a small convolutional VAE for 28x28 images: two stride-2 3x3 conv layers of 32 and 64 channels "
        "(28 -> 14 -> 7), 20 latent units, transposed convolutions back; Adam 1e-3, batch 128",
        {"data.name": "mnist", "model.kind": "vae", "model.net": "conv", "model.channels": [32, 64], "model.activation": "relu",
         "model.latent_dim": 20, "train.optimizer": "adam", "train.lr": 1e-3, "train.batch_size": 128}),
}


def preset(name: str) -> list[str]:
    """The ``section.key=value`` assignments of a named preset."""
    if name not in PRESETS:
        raise VaekitError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    return [f"{k}={json.dumps(v)}" for k, v in PRESETS[name][1].items()]

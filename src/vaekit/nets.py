"""Encoder and decoder bodies. They output raw parameters, never distributions.

An encoder maps x (*batch, *shape) to (*batch, out); a decoder maps z (*batch, k)
to (*batch, P, *shape), P being the likelihood's parameters per element. Any
number of leading batch dimensions passes through (L Monte Carlo samples, K
importance samples).

A net by name (``model.net``) is a function ``net(cfg, code_dim, latent_dim, n_params) -> (encoder, decoder)``
registered with ``vaekit.register("net", name)``: the encoder outputs ``code_dim`` numbers per example, the
decoder takes ``latent_dim`` and outputs (n_params, *cfg.input_shape) per example. ``config_keys`` on the
function names the ModelConfig keys it reads.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from .errors import VaekitError
from .registry import register

# ReLU in place: the layer before it never needs its own output for the backward pass, and a pass
# over the activations is saved (it shows in IWAE evaluation, where the decoder runs K times per image)
ACTIVATIONS = {"relu": partial(nn.ReLU, inplace=True), "tanh": nn.Tanh, "softplus": nn.Softplus}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with ``activation`` between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (*batch, *shape) flattened, then fully connected layers to ``out`` numbers."""
    def __init__(self, shape: tuple[int, ...], hidden: tuple[int, ...], out: int, activation: str):
        super().__init__()
        self.shape = shape
        self.net = mlp([math.prod(shape), *hidden, out], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-len(self.shape)))


class MLPDecoder(nn.Module):
    """z (*batch, k) through the mirrored layers to (*batch, n_params, *shape)."""
    def __init__(self, shape: tuple[int, ...], hidden: tuple[int, ...], k: int, n_params: int, activation: str):
        super().__init__()
        self.shape, self.n_params = shape, n_params
        self.net = mlp([k, *reversed(hidden), n_params * math.prod(shape)], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, (self.n_params, *self.shape))

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """The last layer's bias from outputs shaped (n_params, *shape): what the decoder gives when z has no say."""
        self.net[-1].bias.copy_(params.reshape(-1))


def _halvings(h: int, w: int, n: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv with kernel 3 and padding 1: ceil(size / 2)."""
    sizes = [(h, w)]
    for _ in range(n):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


class ConvEncoder(nn.Module):
    """Stride-2 3×3 convolutions, each halving H and W (rounding up), then a linear head."""

    def __init__(self, shape: tuple[int, int, int], channels: tuple[int, ...], out: int, activation: str):
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), ACTIVATIONS[activation]()]
            c = c_out
        hl, wl = _halvings(h, w, len(channels))[-1]
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * hl * wl, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-3]
        return self.net(x.reshape(-1, *x.shape[-3:])).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """The encoder mirrored: a linear layer, then stride-2 transposed convolutions back to exactly H×W."""

    def __init__(self, shape: tuple[int, int, int], channels: tuple[int, ...], k: int, n_params: int, activation: str):
        super().__init__()
        c, h, w = shape
        self.shape, self.n_params = shape, n_params
        sizes = _halvings(h, w, len(channels))
        hl, wl = sizes[-1]
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(k, channels[-1] * hl * wl), act(), nn.Unflatten(1, (channels[-1], hl, wl))]
        outs = [*reversed(channels[:-1]), n_params * c]
        c_in = channels[-1]
        for i, c_out in enumerate(outs):
            (hi, wi), (ho, wo) = sizes[-1 - i], sizes[-2 - i]
            # a transposed conv (k=3, s=2, p=1) gives 2·size − 1; output_padding adds the row lost to rounding up
            layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=(ho - 2 * hi + 1, wo - 2 * wi + 1)))
            if i < len(outs) - 1:
                layers.append(act())
            c_in = c_out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))  # (B, P·C, H, W)
        return out.reshape(*batch, self.n_params, *self.shape)

    @torch.no_grad()
    def set_output_bias(self, params: torch.Tensor) -> None:
        """The last transposed convolution's bias from outputs shaped (n_params, C, H, W): one bias per channel,
        so each channel starts at its mean over the image."""
        self.net[-1].bias.copy_(params.mean((-2, -1)).reshape(-1))


@register("net", "mlp")
def mlp_pair(cfg, code_dim: int, latent_dim: int, n_params: int) -> tuple[nn.Module, nn.Module]:
    """Fully connected encoder and decoder of ``cfg.hidden`` widths, the decoder mirrored."""
    shape = tuple(cfg.input_shape)
    return (MLPEncoder(shape, cfg.hidden, code_dim, cfg.activation),
            MLPDecoder(shape, cfg.hidden, latent_dim, n_params, cfg.activation))


@register("net", "conv")
def conv_pair(cfg, code_dim: int, latent_dim: int, n_params: int) -> tuple[nn.Module, nn.Module]:
    """Stride-2 convolutions of ``cfg.channels`` and their mirror, for images (C, H, W)."""
    shape = tuple(cfg.input_shape)
    if len(shape) != 3:
        raise VaekitError(f"model.net=conv needs image data (C, H, W), but the data has rows of shape {shape}; use model.net=mlp")
    return (ConvEncoder(shape, cfg.channels, code_dim, cfg.activation),
            ConvDecoder(shape, cfg.channels, latent_dim, n_params, cfg.activation))


mlp_pair.config_keys = frozenset({"hidden", "activation"})
conv_pair.config_keys = frozenset({"channels", "activation"})

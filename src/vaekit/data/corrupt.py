"""Corruptions x -> x̃ for denoising autoencoders (the clean x stays the target)."""
from __future__ import annotations

import torch


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """"gaussian": x + level·ε; "mask": a ``level`` fraction of elements set to 0;
    "salt-pepper": a ``level`` fraction set to 0 or 1, each with probability ½."""
    if kind == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    if kind == "mask":
        return x.masked_fill(hit, 0.0)
    if kind == "salt-pepper":
        salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        return torch.where(hit, salt.to(x.dtype), x)
    raise ValueError(f"unknown corruption {kind!r}")

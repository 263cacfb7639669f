"""What the likelihoods and the latent distributions share: full precision for densities, sample shapes."""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """Densities are summed over hundreds of terms: in fp32 even when the networks ran under bf16 autocast."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def sample_shape_of(sample_shape: int | tuple[int, ...] | torch.Size | None) -> torch.Size:
    """``sample_shape`` as torch.distributions takes it; an int n means (n,), None means ()."""
    if sample_shape is None:
        return torch.Size()
    return torch.Size((sample_shape,) if isinstance(sample_shape, int) else sample_shape)

"""An exponential moving average of a model's weights (``train.ema``), the average serious trainers evaluate.

After each optimizer step t (counted from 1) the average moves toward the weights by 1 − d_t, with
d_t = min(decay, (1 + t) / (10 + t)): the warm-up of TensorFlow's ExponentialMovingAverage, so the early
average is not held back by the random initialization. Entries that are not floating point (counters) are
copied as they are.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .checkpoint import check_state


def decay_at(decay: float, step: int) -> float:
    """d_t of step ``step`` (1-based): the average's weight on its past."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """``update(step)`` after each optimizer step; ``applied()`` puts the average in the model for a while;
    ``state_dict``/``load_state_dict`` carry it through trainer.pt."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.live = model.state_dict()  # detached views of the parameters and buffers: they follow every update
        self.average = {k: v.detach().clone() for k, v in self.live.items()}
        self.floats = [k for k, v in self.live.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average toward the weights after step ``step``."""
        torch._foreach_lerp_([self.average[k] for k in self.floats], [self.live[k] for k in self.floats],
                             1 - decay_at(self.decay, step))
        for k, v in self.live.items():
            if not v.is_floating_point():
                self.average[k].copy_(v)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own again after it."""
        own = {k: v.clone() for k, v in self.live.items()}
        self._copy(self.average)
        try:
            yield
        finally:
            self._copy(own)

    def apply(self) -> None:
        """The averaged weights into the model, for good (the end of training)."""
        self._copy(self.average)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, on the CPU."""
        return {k: v.to("cpu").clone() for k, v in self.average.items()}

    def load_state_dict(self, tensors: Mapping[str, Any], source: Path) -> None:
        """The averaged weights back from trainer.pt, each checked against the model first."""
        check_state(self.model, tensors, source)
        with torch.no_grad():
            for k, v in self.average.items():
                v.copy_(tensors[k])

    @torch.no_grad()
    def _copy(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for k, v in self.live.items():
            v.copy_(tensors[k])

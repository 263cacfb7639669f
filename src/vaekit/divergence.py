"""How the trainer notices that training diverged: a non-finite loss, or weights that give one.

Each check stops every rank alike with one line that names the step and what to change, before the next
checkpoint is written, so the checkpoint left in the run directory is the last one whose weights gave a
finite loss.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import torch

from . import distributed
from .data import Dataset, MemoryPart
from .errors import VaekitError


class Trainer(Protocol):
    """What the checks read of the trainer (``vaekit.trainer.Trainer``)."""

    model: torch.nn.Module
    state: Any
    world: int
    device: torch.device
    out: Path | None
    dataset: Dataset


def check_losses(trainer: Trainer, buf: torch.Tensor) -> None:
    """Stop at the first step of the epoch so far whose loss is not finite on any rank."""
    s, world = trainer.state, trainer.world
    done = buf[: s.batch, 0]
    bad = (~torch.isfinite(done)).nonzero()
    first = torch.tensor([int(bad[0]) if len(bad) else len(done)], device=buf.device)
    i = int(distributed.min_over_ranks(first, world))
    if i < len(done):
        step = s.step - s.batch + i + 1
        value = (done[i] / buf[i, 3]).item()
        what = "non-finite on another process" if math.isfinite(value) else value
        _stop(trainer, f"loss became {what} at step {step} (epoch {s.epoch + 1})", first=step == 1)


def check_weights(trainer: Trainer, x: torch.Tensor, y: torch.Tensor | None) -> None:
    """Stop when the weights after this step give a non-finite loss on its batch: the step's own loss was
    computed before its update, so a checkpoint of the updated weights could otherwise hold NaN."""
    model, s = trainer.model, trainer.state
    with torch.no_grad():
        model.eval()
        loss = model.loss(x, generator=torch.Generator(trainer.device).manual_seed(0), y=y).loss
        model.train()
        finite = torch.isfinite(loss) & torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if int(distributed.min_over_ranks(finite.int().reshape(1), trainer.world)) == 0:
        _stop(trainer, f"the weights after step {s.step} (epoch {s.epoch + 1}) give a non-finite loss")


def check_validation(trainer: Trainer, loss: float) -> None:
    """Stop when the epoch's validation loss (the same on every rank) is not finite."""
    if not math.isfinite(loss):
        s = trainer.state
        _stop(trainer, f"the validation loss became {loss} after epoch {s.epoch + 1} (step {s.step})")


def _stop(trainer: Trainer, what: str, first: bool = False) -> None:
    out: Path | None = trainer.out
    if out is None:
        kept = "nothing was written"
    elif (out / "trainer.pt").exists():
        kept = f"the last good checkpoint in {out} is kept"
    else:
        kept = f"no checkpoint had been written to {out} yet"
    raise VaekitError(f"{what}; training stopped and {kept}; {_hint(trainer, first)}")


def _hint(trainer: Trainer, first: bool) -> str:
    """What to change: the data's scale when it is far from 1; the model's settings when the initial weights
    already gave a non-finite loss (no step had been taken, so the step size cannot be the cause); else the step
    size."""
    part = trainer.dataset.train
    x = part.x if isinstance(part, MemoryPart) else None
    if x is not None and x.is_floating_point() and len(x):
        largest = x.abs().max().item()
        if not math.isfinite(largest) or largest > 100:
            return (f"the training data reach {largest:g} in absolute value; scale them to about unit size "
                    "(for example to zero mean and unit variance per column) before training")
    if first:
        return "the initial weights already gave it, before any update: check the model's settings against the data"
    return "try a lower train.lr or set train.grad_clip"

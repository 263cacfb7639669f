"""What the trainer does with one minibatch: a step builds its optimizer(s), updates the parameters and returns
the batch's (loss, reconstruction, KL) means.

A step is built as ``step(trainer)`` and called as ``step(x, y, kl_weight, generator, weight)``, where ``weight``
scales this process's share of a global batch (see ``vaekit.distributed``); ``state_dict`` and ``load_state_dict``
carry its optimizers through checkpoints. ``GradientStep`` is the default: the model's objective through autograd
(or, where it applies, the hand-derived step of ``vaekit.fused``). Wake-sleep is another (``baselines.WakeSleepStep``).
"""
from __future__ import annotations

from typing import Any, Protocol

import torch

from . import distributed, fused
from .config import TrainConfig
from .trainstate import load_optimizer


class Step(Protocol):
    """What the trainer calls per minibatch; see the module's docstring. ``optimizers`` are the ones whose
    learning rate ``train.schedule`` sets before each call."""

    optimizers: list[torch.optim.Optimizer]

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, kl_weight: float, generator: torch.Generator,
                 weight: float) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]:
        """The step's optimizer state(s), for the trainer's checkpoint."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The step's optimizer state(s) back from a checkpoint."""


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names, with its learning rate, weight decay and (Adam, Adagrad) ε and β."""
    # fused: one kernel over all parameters; on 2 CPU cores Adam's step is 4× faster than the foreach default
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


class GradientStep:
    """A gradient step on ``model.objective`` with the configured optimizer, clipping, precision and compilation."""

    def __init__(self, trainer):
        tc, model, world, device = trainer.tc, trainer.model, trainer.world, trainer.device
        self.model, self.clip = model, tc.grad_clip
        self.opt = make_optimizer(model.parameters(), tc)
        self.optimizers = [self.opt]
        self.loss = distributed.wrap(model, world, device)
        if tc.compile:  # in place, so the state dict keeps its keys
            for net in _networks(model):
                net.compile()
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
        # DDP's gradient hooks and compiled graphs live in autograd: those runs take the autograd step
        by_hand = tc.fused and world.size == 1 and not tc.compile
        self.fast = fused.step_for(model, tc.precision) if by_hand else None

    def __call__(self, x, y, kl_weight, generator, weight):
        if self.fast is not None:
            terms = self.fast(x, kl_weight, generator, weight)
        else:
            with self.autocast:
                loss, terms = self.loss(x, y, kl_weight, generator, weight)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return terms

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, for the trainer's checkpoint."""
        return self.opt.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The optimizer's state back from a checkpoint, once every tensor in it is checked against the model."""
        load_optimizer(self.opt, state)


def _networks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoder and decoder networks (and a hierarchical VAE's layer networks): what compiling pays for."""
    nets = []
    for m in model.children():
        nets.extend(m if isinstance(m, torch.nn.ModuleList) else [m])
    return nets

"""What trainer.pt holds, and the one reader that checks all of it before the trainer uses any.

trainer.pt is one checkpoint, written at once: the model's weights, the loop's state, the step's optimizer
state(s) and the noise generator's state of the same step. It is read with ``weights_only=True``, so no code
runs; but a file of another run, or a crafted one, can still hold tensors of other shapes, which torch's
optimizers (fused Adam above all) would index past the end of. So every field is checked for its type, and
every tensor against the model and optimizer it is about to be loaded into.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .errors import VaekitError

STOPS = (None, "max_steps", "early_stopping")
ADDED = {"trained_seconds": 0.0, "planned_epochs": 0}  # fields a trainer.pt of an earlier version lacks, as they start


@dataclass
class TrainState:
    """Where the loop is; saved in trainer.pt (tensors and numbers only, read back with ``weights_only=True``)."""

    step: int = 0  # optimizer steps in all
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    partial: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))  # the current epoch's per-step sums, over ranks
    seconds: float = 0.0  # training time in the current epoch so far
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    best: float = math.inf  # the best validation loss
    bad_epochs: int = 0  # epochs since it improved
    stopped: str | None = None  # "max_steps" or "early_stopping" once it stops
    trained_seconds: float = 0.0  # wall-clock seconds of the epochs completed, over every session (the time budget's)
    planned_epochs: int = 0  # a time-budgeted run's estimate of the epochs it will reach (0: not yet measured)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: Path) -> "TrainState":
        """The state from trainer.pt's dict, refusing one that lacks a field or holds a value of the wrong kind."""
        d = {**ADDED, **d}
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(d))
        if missing:
            raise VaekitError(f"{source}: the trainer state has no {missing[0]!r}; it is damaged or of another version")
        for name in ("step", "epoch", "batch", "bad_epochs", "planned_epochs"):
            _check(isinstance(d[name], int) and not isinstance(d[name], bool) and d[name] >= 0, source, name, d[name],
                   "a count (an integer ≥ 0)")
        for name in ("seconds", "best", "trained_seconds"):
            _check(isinstance(d[name], (int, float)) and not isinstance(d[name], bool), source, name, d[name], "a number")
        p = d["partial"]
        _check(isinstance(p, torch.Tensor) and p.dim() == 2 and p.shape[1] == 4 and p.shape[0] == d["batch"] * (p.numel() > 0)
               and p.is_floating_point(), source, "partial", p, "the current epoch's (batches, 4) sums")
        _check(isinstance(d["history"], list) and all(isinstance(h, dict) for h in d["history"]), source, "history",
               d["history"], "a list of per-epoch records")
        _check(d["stopped"] in STOPS, source, "stopped", d["stopped"], f"one of {STOPS}")
        return cls(**{k: d[k] for k in names})


@dataclass
class Checkpoint:
    """trainer.pt, read and checked: the loop's state and what goes with it."""

    state: TrainState
    weights: dict[str, torch.Tensor] | None  # None in a trainer.pt written before it held the weights
    step_kind: str
    step_state: dict[str, Any]
    noise: torch.Tensor
    world_size: int
    averaged: dict[str, torch.Tensor] | None = None  # the weights' moving average, under train.ema

    def to_dict(self) -> dict[str, Any]:
        """The dict torch.save writes to trainer.pt."""
        return {**asdict(self.state), "weights": self.weights, "optimizer": self.step_state, "step_kind": self.step_kind,
                "noise": self.noise, "world_size": self.world_size, "averaged": self.averaged}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: Path, noise_like: torch.Tensor) -> "Checkpoint":
        """trainer.pt's dict, every field checked; ``noise_like`` is a state of the generator it will be loaded into."""
        d = dict(d)
        for name in ("optimizer", "noise"):
            if name not in d:
                raise VaekitError(f"{source}: the trainer state has no {name!r}; it is damaged or of another version")
        weights, step_state, noise = d.pop("weights", None), d.pop("optimizer"), d.pop("noise")
        step_kind, world_size, averaged = d.pop("step_kind", "GradientStep"), d.pop("world_size", 1), d.pop("averaged", None)
        _check(weights is None or isinstance(weights, dict), source, "weights", weights, "a dict of tensors")
        _check(averaged is None or isinstance(averaged, dict), source, "averaged", averaged, "a dict of tensors")
        _check(isinstance(step_state, dict), source, "optimizer", step_state, "the step's dict of optimizer states")
        _check(isinstance(noise, torch.Tensor) and noise.dtype == noise_like.dtype and noise.shape == noise_like.shape,
               source, "noise", noise, f"a generator state ({noise_like.dtype} of shape {tuple(noise_like.shape)})")
        _check(isinstance(step_kind, str), source, "step_kind", step_kind, "the name of a step")
        _check(isinstance(world_size, int) and world_size >= 1, source, "world_size", world_size, "a number of processes")
        return cls(TrainState.from_dict(d, source), weights, step_kind, step_state, noise, world_size, averaged)


def load_optimizer(opt: torch.optim.Optimizer, state: Any, what: str = "optimizer") -> None:
    """``opt.load_state_dict(state)`` once ``check_optimizer_state`` has passed it."""
    check_optimizer_state(opt, state, what)
    opt.load_state_dict(state)


def check_optimizer_state(opt: torch.optim.Optimizer, state: Any, what: str = "optimizer") -> None:
    """Refuse an optimizer state dict that does not fit ``opt``: the same groups of the same numbers of parameters,
    and every per-parameter tensor a scalar or of its parameter's shape and dtype."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) or not isinstance(state.get("param_groups"), list):
        raise VaekitError(f"{what}: expected an optimizer state dict with 'state' and 'param_groups'")
    groups, mine = state["param_groups"], opt.param_groups
    if len(groups) != len(mine):
        raise VaekitError(f"{what}: {len(groups)} parameter groups, the optimizer has {len(mine)}")
    params: dict[Any, torch.Tensor] = {}
    for i, (g, m) in enumerate(zip(groups, mine)):
        ids = g.get("params") if isinstance(g, dict) else None
        if not isinstance(ids, list) or len(ids) != len(m["params"]):
            raise VaekitError(f"{what}: parameter group {i} holds {len(ids) if isinstance(ids, list) else 'no'} parameters, "
                              f"the model's has {len(m['params'])}; the state is of another model")
        for key, value in g.items():
            if key != "params" and not isinstance(value, (bool, int, float, str, type(None), tuple, list)):
                raise VaekitError(f"{what}: parameter group {i}'s {key!r} is a {type(value).__name__}, expected a setting")
        params.update(zip(ids, m["params"]))
    for key, entry in state["state"].items():
        if key not in params:
            raise VaekitError(f"{what}: state for parameter {key!r}, which no parameter group holds")
        if not isinstance(entry, dict):
            raise VaekitError(f"{what}: the state of parameter {key!r} is a {type(entry).__name__}, expected a dict")
        p = params[key]
        for name, t in entry.items():
            if isinstance(t, torch.Tensor) and t.numel() > 1 or isinstance(t, torch.Tensor) and t.shape == p.shape:
                if t.shape != p.shape or t.dtype != p.dtype:
                    raise VaekitError(f"{what}: {name!r} of parameter {key!r} has shape {tuple(t.shape)} ({t.dtype}), the model's "
                                      f"parameter {tuple(p.shape)} ({p.dtype}); the state is of another model")
            elif isinstance(t, torch.Tensor):
                if t.numel() != 1 or not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32)):
                    raise VaekitError(f"{what}: {name!r} of parameter {key!r} is a {t.dtype} tensor, expected a number")
            elif t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool)):  # SGD's buffer is None without momentum
                raise VaekitError(f"{what}: {name!r} of parameter {key!r} is a {type(t).__name__}, expected a tensor or number")


def entry(state: Any, key: str, what: str = "the step's state") -> Any:
    """``state[key]`` from a step's saved dict, refusing a state that is not a dict or lacks the key."""
    if not isinstance(state, dict) or key not in state:
        raise VaekitError(f"{what}: no {key!r}; written by another step or damaged")
    return state[key]


def _check(ok: bool, source: Path, name: str, value: Any, expected: str) -> None:
    if not ok:
        shown = f"a {type(value).__name__}" if not isinstance(value, (int, float, str, type(None))) else repr(value)
        raise VaekitError(f"{source}: the trainer state's {name!r} is {shown}, expected {expected}")

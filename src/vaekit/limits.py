"""The ranges the numbers a user gives must lie in, and whether what they ask for fits in memory.

Both are checked before any work starts, so that a value out of range is one line naming it, not a traceback
after minutes of work or a silently wrong result; the commands and the Python functions share the one table.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from .errors import VaekitError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    integer: bool = True
    open_low: bool = False  # the low end itself is excluded (a temperature of 0 draws nothing)

    def check(self, name: str, value: Any) -> Any:
        """``value`` when it lies in the range, else a VaekitError naming ``name``; None passes (a default)."""
        if value is None:
            return None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.integer and not (number and float(value).is_integer()):
            raise VaekitError(f"{name}={value!r}: expected a whole number from {self.low:g} to {self.high:g}")
        if not number or not math.isfinite(value) or not (self.low < value if self.open_low else self.low <= value) \
                or value > self.high:
            span = f"greater than {self.low:g} and at most {self.high:g}" if self.open_low else f"from {self.low:g} to {self.high:g}"
            raise VaekitError(f"{name}={value!r}: expected a {'whole ' if self.integer else ''}number {span}")
        return int(value) if self.integer else float(value)


# Arguments of the commands and of the library functions behind them, by name.
RANGES: dict[str, Range] = {
    "n": Range(1, 100_000),  # images or examples drawn; a picture of more is no picture
    "k": Range(1, 10_000_000),  # importance samples per example
    "k_naive": Range(1, 10_000_000),
    "subset": Range(1, 10**12),
    "steps": Range(1, 100_000),
    "top": Range(1, 100_000),
    "index": Range(0, 10**12),
    "temperature": Range(0, 1e3, integer=False, open_low=True),
    "span": Range(0, 1e6, integer=False, open_low=True),
    "fraction": Range(0, 1, integer=False, open_low=True),
    "noise": Range(0, 1e6, integer=False),
    "port": Range(0, 65535),
    "labels": Range(1, 10**12),
    "repeats": Range(1, 10_000),
}


def check(name: str, value: Any) -> Any:
    """``value`` checked against the range of the argument ``name``."""
    return RANGES[name].check(name, value)


def checked(func: Callable) -> Callable:
    """``func`` with its arguments named in RANGES checked on every call."""
    signature = inspect.signature(func)
    names = [p for p in signature.parameters if p in RANGES]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name in names:
            if name in bound.arguments:
                check(name, bound.arguments[name])
        return func(*args, **kwargs)

    return wrapper


def machine_memory() -> int:
    """This machine's physical memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits(nbytes: float, what: str, hint: str) -> None:
    """Refuse, before allocating, what needs more memory than the machine has in all."""
    total = machine_memory()
    if total and nbytes > total:
        raise VaekitError(f"{what} would take about {_size(nbytes)}, more than this machine's {_size(total)} of memory; {hint}")


def check_training_fits(model, batch_size: int) -> None:
    """Refuse a training whose step cannot fit: the weights with their gradients and Adam's two moments, and one
    batch's activations (every layer's outputs, counted by its biases, kept for the backward pass) for each of
    the objective's samples per example. An estimate from below: what it refuses surely does not fit."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    samples = getattr(model.objective, "k", None) or getattr(model.objective, "mc_samples", 1)
    widths = sum(p.numel() for p in model.parameters() if p.ndim == 1)
    activations = batch_size * samples * (4 * math.prod(model.input_shape) + widths) * 4 * 2
    check_fits(4 * weights + activations, f"training with train.batch_size={batch_size} and {samples} sample(s) per example",
               "choose a smaller train.batch_size, --k or model")


def _size(nbytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} bytes"

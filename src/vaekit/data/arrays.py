"""Data a user hands over in memory: tensors, numpy arrays, (x, y) pairs and ``torch.utils.data.Dataset`` objects.

``as_dataset`` turns them into the same train / validation / test parts a named data set
has, so the one trainer and the evaluation read them the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import VaekitError
from .parts import MemoryPart, unit_scale


def _tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
    elif isinstance(a, np.ndarray):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise VaekitError(f"{what}: a numpy array of {a.dtype}; expected real numbers")
        t = torch.from_numpy(np.ascontiguousarray(a))
    else:
        raise VaekitError(f"{what}: a {type(a).__name__}; expected a tensor, a numpy array, an (x, y) pair or a torch Dataset")
    if t.dim() < 2:
        raise VaekitError(f"{what}: shape {tuple(t.shape)}; expected rows, (N, ...) with N examples")
    return t


def _from_torch_dataset(ds: Any, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every item of a map-style or iterable Dataset, stacked: items are x or (x, y)."""
    xs, ys = [], []
    for i, item in enumerate(ds):
        if isinstance(item, (tuple, list)) and len(item) == 2:
            x, y = item
        elif isinstance(item, (tuple, list)):
            raise VaekitError(f"{what}: item {i} has {len(item)} parts; a Dataset must yield x or (x, y)")
        else:
            x, y = item, None
        try:
            xs.append(torch.as_tensor(np.asarray(x)))
            ys.append(None if y is None else torch.as_tensor(np.asarray(y)))
        except (TypeError, ValueError, RuntimeError):
            raise VaekitError(f"{what}: item {i} is a {type(x).__name__}; a Dataset must yield tensors or arrays "
                              "(x, or (x, y) with a number y)") from None
    if not xs:
        raise VaekitError(f"{what}: the Dataset yields no items")
    if any(y is None for y in ys) and not all(y is None for y in ys):
        raise VaekitError(f"{what}: some items are (x, y) pairs and some are x alone")
    try:
        x = torch.stack(xs)
        y = None if ys[0] is None else torch.stack(ys)
    except RuntimeError:
        raise VaekitError(f"{what}: the Dataset's items differ in shape ({tuple(xs[0].shape)} first)") from None
    return x, y


def _labels(y: Any, what: str) -> torch.Tensor | None:
    """Labels as a tensor: class numbers (N,) or condition vectors (N, C)."""
    if y is None:
        return None
    try:
        t = y.detach().cpu() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    except (TypeError, ValueError, RuntimeError):
        raise VaekitError(f"{what} y: a {type(y).__name__}; expected numbers, one per row") from None
    if t.dim() == 0 or t.dtype == torch.bool or t.is_complex():
        raise VaekitError(f"{what} y: shape {tuple(t.shape)}, dtype {t.dtype}; expected a number (or a vector) per row")
    return t


def as_rows(data: Any, what: str = "data") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y or None) from a tensor or array of rows, a pair (x, y), or a torch Dataset."""
    if isinstance(data, torch.utils.data.Dataset):
        x, y = _from_torch_dataset(data, what)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _tensor(data[0], f"{what} x"), _labels(data[1], what)
    else:
        x, y = _tensor(data, what), None
    if x.dtype != torch.uint8:
        if not (x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64)):
            raise VaekitError(f"{what}: dtype {x.dtype}; expected real numbers")
        x = x.float()
        bad = ~torch.isfinite(x)
        if bad.any():
            raise VaekitError(f"{what}: row {int(bad.flatten(1).any(1).nonzero()[0])} holds a value that is not finite (NaN or Inf)")
    if y is not None:
        if len(y) != len(x):
            raise VaekitError(f"{what}: {len(x)} rows of x but {len(y)} labels")
        if y.dim() == 1 and not y.is_floating_point():
            y = y.long()
    if len(x) == 0:
        raise VaekitError(f"{what}: no rows")
    return x, y


def as_dataset(data: Any, val: Any = None, test: Any = None, val_size: float = 0.1, name: str = "tensors"):
    """A Dataset from data in memory. Without ``val`` the last ``val_size`` of the rows (a fraction, or a
    count when ≥ 1) are held out for validation, as for a named data set; without ``test`` the
    validation rows stand in for the test split."""
    from . import Dataset, split_count

    x, y = as_rows(data, "data")
    if val is None:
        n_val = split_count(val_size, len(x), "val_size")
        (x, xv), (y, yv) = (x[:-n_val], x[-n_val:]), ((None, None) if y is None else (y[:-n_val], y[-n_val:]))
    else:
        xv, yv = as_rows(val, "val")
    xt, yt = (xv, yv) if test is None else as_rows(test, "test")
    for part_x, what in ((xv, "val"), (xt, "test")):
        if part_x.shape[1:] != x.shape[1:]:
            raise VaekitError(f"{what}: rows of shape {tuple(part_x.shape[1:])}, but the training rows have {tuple(x.shape[1:])}")
    parts = [MemoryPart(a, b, unit_scale(a.dtype)) for a, b in ((x, y), (xv, yv), (xt, yt))]
    kind = "image" if x.dim() == 4 else "table"
    unit = all(_in_unit_range(p.x) for p in parts)
    return Dataset(name, *parts, kind=kind, likelihood="bernoulli" if unit else "gaussian")


def _in_unit_range(x: torch.Tensor) -> bool:
    return x.dtype == torch.uint8 or bool((x.min() >= 0) & (x.max() <= 1))

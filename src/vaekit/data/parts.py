"""A split of a data set as rows that yield minibatches: in memory, or streamed from a .npy file.

Rows stay in their stored dtype (uint8 images take a quarter of float32's memory)
and become float in [0, 1] one batch at a time. Batches are drawn by indexing a
tensor, not through a DataLoader: for in-memory tensors a per-example Python
``__getitem__`` and collate costs more than the model does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import VaekitError
from .readers import npy_header

Batch = tuple[torch.Tensor, torch.Tensor | None]  # x (B, *shape) float, y (B,) int64 or None
EVAL_SEED = 7919  # fixes the binarization and z draws of an evaluation, so epochs compare like with like


def unit_scale(dtype) -> float:
    """What rows of ``dtype`` are divided by to lie in [0, 1]: 255 for 8-bit images, 1 for anything else."""
    return 255.0 if dtype in (np.uint8, torch.uint8) else 1.0


def bernoulli16(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x ~ Bernoulli(p) drawn from 16 random bits per element.

    Each u is one of the 65536 midpoints of (0, 1), so P(u < p) is p to within
    2⁻¹⁷, far below the 1/255 steps of 8-bit pixels; one 64-bit draw serves four
    elements, which on CPU makes this 6× faster than torch.bernoulli.
    """
    n = p.numel()
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, generator=generator, device=p.device)
    u = bits.view(torch.int16)[:n].view(p.shape).to(p.dtype)
    return (u.add_(32768.5).mul_(1 / 65536) < p).to(p.dtype)


class Part:
    """Common ground of the in-memory and streamed splits."""

    shape: tuple[int, ...]
    dynamic_binarize: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int, order: torch.Generator | None = None, start: int = 0,
                noise: torch.Generator | None = None, device: torch.device | str = "cpu",
                rows: Callable[[int], slice] | None = None) -> Iterator[Batch]:
        """Minibatches in a random order drawn from ``order`` (or in file order when None).

        ``start`` skips that many batches (to resume mid-epoch). ``rows(n)`` picks
        the rows of each n-row batch this process keeps (a shard of a global batch;
        possibly none). Under dynamic binarization each batch is a fresh Bernoulli
        draw from ``noise``, which must live on ``device``.
        """
        for x, y in self._batches(batch_size, order, start):
            if rows is not None:
                keep = rows(len(x))
                x, y = x[keep], None if y is None else y[keep]
            x = x.to(device, non_blocking=True)
            x = x.float().mul_(1.0 / self.scale) if x.dtype == torch.uint8 else x.float()
            if self.dynamic_binarize:
                x = bernoulli16(x, noise)
            yield x, (y.to(device) if y is not None else None)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each element's mean and variance over the rows (shape ``self.shape``, float32), as training sees the
        rows before any binarization: in [0, 1] for 8-bit images."""
        total = squares = None
        for x, _ in self._batches(4096, None, 0):
            x = x.double().mul_(1.0 / self.scale) if x.dtype == torch.uint8 else x.double()
            total = x.sum(0) if total is None else total.add_(x.sum(0))
            squares = x.square().sum(0) if squares is None else squares.add_(x.square().sum(0))
        mean = total / len(self)
        return mean.float(), (squares / len(self) - mean.square()).clamp_(min=0).float()

    def n_batches(self, batch_size: int) -> int:
        """How many minibatches of ``batch_size`` one pass takes (the last may be short)."""
        return -(-len(self) // batch_size)


class MemoryPart(Part):
    """Rows held in memory as one tensor (uint8 images scaled per batch)."""
    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, scale: float):
        if len(x) == 0:
            raise VaekitError("empty data set: no rows to train or evaluate on")
        self.x, self.y, self.scale = x, y, scale
        self.shape = tuple(x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> "MemoryPart":
        """The same rows on ``device`` (batches are then cut there)."""
        part = MemoryPart(self.x.to(device), self.y.to(device) if self.y is not None else None, self.scale)
        part.dynamic_binarize = self.dynamic_binarize
        return part

    def _batches(self, batch_size, order, start):
        n = len(self.x)
        idx = torch.randperm(n, generator=order).to(self.x.device) if order is not None else None
        for i in range(start * batch_size, n, batch_size):
            if idx is None:
                yield self.x[i:i + batch_size], None if self.y is None else self.y[i:i + batch_size]
            else:
                j = idx[i:i + batch_size]
                yield self.x.index_select(0, j), None if self.y is None else self.y.index_select(0, j)


class StreamPart(Part):
    """Rows ``lo:hi`` of a C-order .npy file, read a chunk at a time with plain file reads.

    Shuffling permutes the order of chunks and the rows within each chunk, so a
    pass reads every byte once and resident memory stays at one chunk however
    large the file is (a memory map would keep the touched pages resident).
    """

    def __init__(self, path: Path, lo: int, hi: int, scale: float, chunk_batches: int = 64):
        self.path, self.lo, self.hi, self.scale, self.chunk_batches = Path(path), lo, hi, scale, chunk_batches
        shape, dtype, self.offset = npy_header(self.path)
        if len(shape) not in (2, 3) and not (len(shape) == 4 and shape[1] in (1, 3, 4)):
            raise VaekitError(f"{path}: shape {shape}; streaming reads (N, D), (N, H, W) or (N, C, H, W) rows")
        self.dtype = dtype
        self.shape = tuple(shape[1:]) if len(shape) != 3 else (1, *shape[1:])
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        self.y = None
        self.check_unit_range = False
        if hi <= lo:
            raise VaekitError(f"{path}: empty data set: no rows to train or evaluate on")

    def __len__(self) -> int:
        return self.hi - self.lo

    def _read(self, f, row: int, count: int) -> np.ndarray:
        f.seek(self.offset + row * self.row_bytes)
        buf = np.empty((count, *self.shape), dtype=self.dtype)
        if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
            raise VaekitError(f"{self.path}: file ends before row {row + count}; truncated .npy")
        if self.dtype != np.uint8:
            flat = buf.reshape(count, -1)
            bad = ~np.isfinite(flat)
            if self.check_unit_range:
                bad |= (flat < 0) | (flat > 1)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                why = "outside [0, 1], which a Bernoulli likelihood needs" if self.check_unit_range else "not finite"
                raise VaekitError(f"{self.path}, row {row + i}: value {float(flat[i, j])} is {why}")
        return buf

    def _batches(self, batch_size, order, start):
        chunk = batch_size * self.chunk_batches
        starts = torch.arange(self.lo, self.hi, chunk)
        if order is not None:
            starts = starts[torch.randperm(len(starts), generator=order)]
        with open(self.path, "rb") as f:
            b = 0
            for c0 in starts.tolist():
                count = min(chunk, self.hi - c0)
                nb = -(-count // batch_size)
                perm = torch.randperm(count, generator=order) if order is not None else None
                if b + nb <= start:  # the whole chunk was already seen before the resume point
                    b += nb
                    continue
                rows = torch.from_numpy(self._read(f, c0, count))
                if perm is not None:
                    rows = rows[perm]
                for i in range(0, count, batch_size):
                    if b >= start:
                        yield rows[i:i + batch_size], None
                    b += 1


def materialize(part: Part, subset: int | None = None, device="cpu", seed: int = EVAL_SEED) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first ``subset`` rows of a split as one tensor, binarized once with a fixed seed when the data is."""
    g = torch.Generator(device).manual_seed(seed)
    xs, ys, n = [], [], 0
    for x, y in part.batches(1000, noise=g, device=device):
        xs.append(x)
        ys.append(y)
        n += len(x)
        if subset is not None and n >= subset:
            break
    x = torch.cat(xs)[:subset]
    y = torch.cat(ys)[:subset] if ys[0] is not None else None
    return x, y

"""Data sets by name or path, split into train / validation / test parts that yield minibatches."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..errors import VaekitError
from .parts import MemoryPart, Part, StreamPart, unit_scale
from .readers import SPLITS, check_array, is_presplit, npy_header, read_csv, read_frey, read_idx, read_image_folder, read_npy, read_npz, read_splits
from .sources import SOURCES, default_data_dir, fetch

NAMES = ("digits", *SOURCES)
_SPLIT_SEED = 20131220  # splits stay fixed across training seeds (the AEVB paper's arXiv date)


@dataclass
class Dataset:
    name: str
    train: Part
    val: Part
    test: Part
    kind: str  # "image" (C, H, W) rows or "table" (D,) rows
    classes: list[str] | None = None
    likelihood: str = "bernoulli"  # what "auto" resolves to for this data

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example: (C, H, W) for images, (D,) for tables."""
        return self.train.shape

    @property
    def parts(self) -> tuple[Part, Part, Part]:
        """The train, validation and test parts, in that order."""
        return self.train, self.val, self.test

    def binarize(self, mode: str) -> None:
        """"dynamic": a fresh Bernoulli draw per batch; "static": one fixed draw now."""
        if mode == "none":
            return
        self.check_unit_range()
        for part in self.parts:
            if mode == "dynamic":
                part.dynamic_binarize = True
            elif isinstance(part, StreamPart):
                raise VaekitError(f"{part.path}: static binarization needs the data in memory; use data.binarize=dynamic with data.stream")
            else:
                g = torch.Generator().manual_seed(_SPLIT_SEED)
                p = part.x.float() / part.scale
                part.x, part.scale = torch.bernoulli(p, generator=g).to(torch.uint8), 1.0

    def check_unit_range(self) -> None:
        """A Bernoulli likelihood is defined on [0, 1] only."""
        for part in self.parts:
            if isinstance(part, StreamPart):
                part.check_unit_range = True
            elif part.x.dtype != torch.uint8:
                lo, hi = part.x.min().item(), part.x.max().item()
                if lo < 0 or hi > 1:
                    raise VaekitError(f"data {self.name!r}: values span [{lo:g}, {hi:g}], but a Bernoulli likelihood needs [0, 1]; "
                                      "use model.likelihood=gaussian or rescale the data")


def load_dataset(cfg: DataConfig, progress: bool = False) -> Dataset:
    """The data set a DataConfig names, split into train / validation / test parts."""
    name = cfg.name
    if cfg.stream and not name.endswith(".npy"):
        raise VaekitError(f"data.stream: streaming reads a .npy file, not {name!r}")
    if name == "digits":
        with resources.files(__package__).joinpath("digits.npz").open("rb") as f, np.load(f) as z:
            x, y = z["images"][:, None], z["labels"].astype(np.int64)
        return _split(name, cfg, x, y, None, 16.0, "image", [str(i) for i in range(10)])
    if name in ("mnist", "fashion-mnist"):
        folder = fetch(name, cfg.data_dir, cfg.download, progress=progress)
        xtr = read_idx(folder / "train-images-idx3-ubyte.gz", 3)[:, None]
        ytr = read_idx(folder / "train-labels-idx1-ubyte.gz", 1).astype(np.int64)
        xte = read_idx(folder / "t10k-images-idx3-ubyte.gz", 3)[:, None]
        yte = read_idx(folder / "t10k-labels-idx1-ubyte.gz", 1).astype(np.int64)
        for images, labels, split in ((xtr, ytr, "train"), (xte, yte, "t10k")):
            if len(images) != len(labels):
                raise VaekitError(f"{folder / f'{split}-labels-idx1-ubyte.gz'}: {len(labels)} labels for {len(images)} images; "
                                  "delete the data set's files to download them again")
        return _split(name, cfg, xtr, ytr, (xte, yte), 255.0, "image", [str(i) for i in range(10)])
    if name == "frey-face":
        folder = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
        if not (folder / "frey-face" / "frey_faces.npz").exists():
            folder = fetch(name, cfg.data_dir, cfg.download, progress=progress).parent
        x = read_frey(folder / "frey-face")
        return _split(name, cfg, x, None, None, 255.0, "image", None, likelihood="gaussian-learned")
    path = Path(name)
    if path.suffix == ".npy" and cfg.stream and path.exists():
        if cfg.val or cfg.test:
            raise VaekitError("data.val and data.test: a streamed .npy is split from itself; give pre-split files without data.stream")
        return _split_stream(cfg, path)
    if path.suffix == ".npz" and path.exists() and is_presplit(path):
        return _presplit(name, cfg, read_splits(path))
    x, y, classes = _rows_of(name, cfg)
    kind = "table" if x.ndim == 2 else "image"
    return _split(name, cfg, x, y, None, unit_scale(x.dtype), kind, classes, likelihood="gaussian" if kind == "table" else "bernoulli")


def _own_part(cfg: DataConfig, key: str) -> MemoryPart | None:
    """The split a file of the user's own gives (data.val, data.test): every row of it, scaled by its own dtype."""
    name = getattr(cfg, key)
    if name is None:
        return None
    x, y, _ = _rows_of(name, cfg)
    return MemoryPart(torch.from_numpy(np.ascontiguousarray(x)), None if y is None else torch.from_numpy(np.asarray(y)),
                      unit_scale(x.dtype))


def _rows_of(name: str, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Every row of a data file or image folder: (x, labels, class names)."""
    path = Path(name)
    if not path.exists():
        raise VaekitError(f"data {name!r}: neither a built-in data set ({', '.join(NAMES)}) nor an existing file or folder")
    classes = None
    if path.is_dir():
        x, y, classes = read_image_folder(path)
    elif path.suffix == ".npy":
        x, y = read_npy(path, mmap=False), None
    elif path.suffix == ".npz":
        x, y = read_npz(path)
    elif path.suffix == ".csv":
        x, y = read_csv(path, cfg.label_column, cfg.condition_columns)
    else:
        raise VaekitError(f"{path}: unsupported data file; expected .npy, .npz, .csv or a folder of images")
    return _as_storable(x, path), y, classes


def _as_storable(x: np.ndarray, path: Path) -> np.ndarray:
    """uint8 stays uint8 (scaled per batch); everything else becomes finite float32."""
    if len(x) == 0:
        raise VaekitError(f"{path}: empty data set: no rows to train or evaluate on")
    check_array(x.shape, x.dtype, path)
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise VaekitError(f"{path}: row {int(np.argwhere(bad)[0][0])} holds a value that is not finite (NaN or Inf)")
    return x


def split_count(size: float, n: int, what: str) -> int:
    """Rows a split of ``size`` (a fraction below 1, else a count) takes of ``n``."""
    k = int(size) if size >= 1 else round(size * n)
    if k < 1 or k >= n:
        raise VaekitError(f"data.{what}={size:g} leaves no rows on one side of a data set of {n} rows")
    return k


def _split(name, cfg, x, y, test, scale, kind, classes, likelihood="bernoulli") -> Dataset:
    if len(x) == 0:
        raise VaekitError(f"data {name!r}: empty data set: no rows to train or evaluate on")
    x = torch.from_numpy(np.ascontiguousarray(x))
    y = torch.from_numpy(np.asarray(y)) if y is not None else None
    val, own_test = _own_part(cfg, "val"), _own_part(cfg, "test")  # files of the user's own replace held-out rows
    if own_test is None and test is None:  # no official test split: hold one out, by a fixed permutation
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(_SPLIT_SEED))
        x, y = x[perm], (y[perm] if y is not None else None)
        n_test = split_count(cfg.test_size, len(x), "test_size")
        test_part = MemoryPart(x[-n_test:], _cut(y, -n_test, None), scale)
        x, y = x[:-n_test], _cut(y, None, -n_test)
    else:
        test_part = own_test or MemoryPart(*(None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for a in test), scale)
    if val is None:
        n_val = split_count(cfg.val_size, len(x), "val_size")  # the tail of the training pool, as in the literature
        x, val, y = x[:-n_val], MemoryPart(x[-n_val:], _cut(y, -n_val, None), scale), _cut(y, None, -n_val)
    return _checked(Dataset(name, MemoryPart(x, y, scale), val, test_part, kind=kind, classes=classes, likelihood=likelihood))


def _checked(dataset: Dataset) -> Dataset:
    for part, key in ((dataset.val, "val"), (dataset.test, "test")):
        if tuple(part.shape) != tuple(dataset.shape):
            raise VaekitError(f"data.{key}: rows of shape {tuple(part.shape)}, but the training rows have {tuple(dataset.shape)}")
    return dataset


def _presplit(name: str, cfg: DataConfig, splits: list[tuple[np.ndarray, np.ndarray | None]]) -> Dataset:
    """A data set that comes split already: its parts as they are, no rows moved between them (but for
    data.val or data.test files, which replace theirs)."""
    parts = []
    for (x, y), key in zip(splits, SPLITS):
        x = _as_storable(x, Path(name))
        parts.append(MemoryPart(torch.from_numpy(np.ascontiguousarray(x)), None if y is None else torch.from_numpy(y), unit_scale(x.dtype)))
    parts[1], parts[2] = _own_part(cfg, "val") or parts[1], _own_part(cfg, "test") or parts[2]
    kind = "table" if len(parts[0].shape) == 1 else "image"
    return _checked(Dataset(name, *parts, kind=kind, likelihood="gaussian" if kind == "table" else "bernoulli"))


def _cut(y, lo, hi):
    return None if y is None else y[lo:hi]


def _split_stream(cfg: DataConfig, path: Path) -> Dataset:
    probe = StreamPart(path, 0, 1, 1.0)
    n = int(npy_header(path)[0][0])
    n_test = split_count(cfg.test_size, n, "test_size")
    n_val = split_count(cfg.val_size, n - n_test, "val_size")
    scale = unit_scale(probe.dtype)
    a, b = n - n_test - n_val, n - n_test
    kind = "table" if len(probe.shape) == 1 else "image"
    return Dataset(str(path), StreamPart(path, 0, a, scale), StreamPart(path, a, b, scale), StreamPart(path, b, n, scale),
                   kind=kind, likelihood="gaussian" if kind == "table" else "bernoulli")


__all__ = ["Dataset", "NAMES", "Part", "default_data_dir", "fetch", "load_dataset", "split_count"]

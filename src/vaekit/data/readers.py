"""Readers from files on disk to arrays of rows: (N, C, H, W) images or (N, D) tables.

Each reader checks what it reads and raises a one-line VaekitError that names the
file and what was expected; none of them scales or converts pixel values.
"""
from __future__ import annotations

import csv
import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import VaekitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels, images


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (gzipped or raw) of uint8 with ``ndim`` dimensions: 1 for labels, 3 for images."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise VaekitError(f"{path}: truncated or corrupt gzip file ({e}); delete it to download it again") from None
    except OSError as e:
        raise VaekitError(f"{path}: cannot read ({e.strerror or e})") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VaekitError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic, *dims = struct.unpack(">" + "I" * (1 + ndim), raw[:header])
    if magic != _IDX_MAGIC[ndim]:
        raise VaekitError(f"{path}: IDX magic number is {magic:#010x}, expected {_IDX_MAGIC[ndim]:#010x}")
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise VaekitError(f"{path}: {len(raw)} bytes, expected {expected} for an IDX array of shape {tuple(dims)}")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(dims)  # writable, for torch


def read_frey(folder: Path) -> np.ndarray:
    """Frey Face as (1965, 1, 28, 20) uint8, from frey_faces.npz if present, else the original .mat."""
    npz = folder / "frey_faces.npz"
    if npz.exists():
        with _open_npz(npz) as z:
            faces = z["faces"] if "faces" in z else None
        if faces is None:
            raise VaekitError(f"{npz}: no array named 'faces'")
    else:
        from scipy.io import loadmat

        mat = folder / "frey_rawface.mat"
        try:
            ff = loadmat(mat)["ff"]
        except (ValueError, KeyError, OSError) as e:
            raise VaekitError(f"{mat}: not a Frey Face MAT-file with variable 'ff' ({e})") from None
        faces = ff.T.reshape(-1, 28, 20)  # one column per image; rows are 28 high, 20 wide
    return np.ascontiguousarray(faces, dtype=np.uint8)[:, None]


def check_array(shape: tuple[int, ...], dtype: np.dtype, path: Path) -> None:
    """What every array read as data must be, loaded or streamed: real numbers (uint8, integers or floats; not
    bool, complex, strings or objects) in rows that each hold at least one value."""
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise VaekitError(f"{path}: dtype {dtype} is not real numbers; expected uint8, integers or floats")
    if len(shape) < 2:
        raise VaekitError(f"{path}: array of shape {tuple(shape)}; expected rows, (N, D) or (N, H, W[, C])")
    if math.prod(shape[1:]) == 0:
        raise VaekitError(f"{path}: rows of shape {tuple(shape[1:])} hold no values")


def as_rows(a: np.ndarray, path: Path) -> np.ndarray:
    """View an array as (N, D) table rows or (N, C, H, W) images."""
    check_array(a.shape, a.dtype, path)
    if a.ndim == 2:
        return a
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4:
        if a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
            return np.moveaxis(a, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
        if a.shape[1] in (1, 3, 4):
            return a
        raise VaekitError(f"{path}: cannot tell the channel axis of shape {a.shape}; expected (N, H, W, C) or (N, C, H, W) with 1, 3 or 4 channels")
    raise VaekitError(f"{path}: array of shape {a.shape} has rank {a.ndim}; expected (N, D), (N, H, W) or (N, H, W, C)")


_BROKEN = (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile)  # what numpy raises for a damaged file


def _open_npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except _BROKEN as e:
        raise VaekitError(f"{path}: not a readable .npz file ({e})") from None


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """x from key 'x', 'images', 'data' or the only array; labels from 'y' or 'labels' when present."""
    with _open_npz(path) as z:
        keys = list(z.keys())
        xk = next((k for k in ("x", "images", "data", "faces") if k in keys), keys[0] if len(keys) == 1 else None)
        if xk is None:
            raise VaekitError(f"{path}: holds {keys}; expected an array named 'x' (and optionally 'y')")
        try:
            x = z[xk]
            yk = next((k for k in ("y", "labels") if k in keys), None)
            y = z[yk] if yk else None
        except _BROKEN as e:  # a truncated member, or an object array, which needs pickle, which we never load
            raise VaekitError(f"{path}: cannot read array {xk!r} ({e})") from None
    x = as_rows(x, path)
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise VaekitError(f"{path}: labels have shape {y.shape}, expected ({len(x)},)")
    return x, y


SPLITS = ("train", "valid", "test")  # the keys of a pre-split .npz, each with an optional "<key>_labels"


def is_presplit(path: Path) -> bool:
    """Whether a .npz holds train/valid/test arrays rather than one data set to split."""
    with _open_npz(path) as z:
        return "train" in z.keys()


def read_splits(path: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The (x, labels) of each split of a pre-split .npz; "valid" and "test" are required beside "train"."""
    with _open_npz(path) as z:
        keys = set(z.keys())
        missing = [k for k in SPLITS if k not in keys]
        if missing:
            raise VaekitError(f"{path}: a pre-split .npz needs arrays {', '.join(SPLITS)}; {', '.join(missing)} missing")
        try:
            out = [(as_rows(z[k], path), z[f"{k}_labels"] if f"{k}_labels" in keys else None) for k in SPLITS]
        except _BROKEN as e:  # a truncated member, or an object array, which needs pickle, which we never load
            raise VaekitError(f"{path}: cannot read its arrays ({e})") from None
    for (x, y), k in zip(out, SPLITS):
        if y is not None and (y.ndim != 1 or len(y) != len(x)):
            raise VaekitError(f"{path}: {k}_labels has shape {y.shape}, expected ({len(x)},)")
    return out


def read_npy(path: Path, mmap: bool) -> np.ndarray:
    """A .npy file as rows, loaded or memory-mapped; never unpickles."""
    return as_rows(_load_npy(path, mmap), path)


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a C-order .npy file, checked as a loaded array is, and its size against
    what the header promises, without reading the rows."""
    a = _load_npy(path, mmap=True)  # a memory map reads the header only, and refuses a file shorter than it promises
    check_array(a.shape, a.dtype, path)
    shape, dtype, offset, c_order = a.shape, a.dtype, a.offset, a.flags.c_contiguous
    del a
    if not c_order:
        raise VaekitError(f"{path}: stored in Fortran order; streaming needs a C-order .npy (np.ascontiguousarray)")
    return shape, dtype, offset


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except _BROKEN as e:
        raise VaekitError(f"{path}: not a readable .npy file ({e})") from None
    if not isinstance(a, np.ndarray):
        raise VaekitError(f"{path}: a .npz archive, not a .npy file; name it .npz")
    return a


class ImageTooLarge(VaekitError):
    """An image with more pixels than the reader was allowed to decode."""


def read_image(path: Any, size: tuple[int, int] | None = None, channels: int | None = None,
               max_pixels: int | None = None) -> np.ndarray:
    """One image file (a path or a binary file object) as uint8 (H, W) for grey or (H, W, 3) for colour;
    ``size`` (H, W) and ``channels`` (1 or 3) convert it to what a model takes."""
    from PIL import Image, UnidentifiedImageError

    name = str(path) if isinstance(path, (str, Path)) else "image"
    try:
        with Image.open(path) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageTooLarge(f"{name}: an image of {im.width}×{im.height} pixels is too large")
            grey = im.mode in ("1", "L", "I", "I;16", "F") if channels is None else channels == 1
            im = im.convert("L" if grey else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise VaekitError(f"{name}: not a readable image ({e})") from None


def read_image_tensor(path: Any, shape: tuple[int, ...], max_pixels: int | None = None) -> torch.Tensor:
    """An image file as a model's input: float (C, H, W) in [0, 1], resized and converted to ``shape``."""
    c, h, w = shape
    a = read_image(path, (h, w), c, max_pixels).astype(np.float32) / 255
    return torch.from_numpy(a).permute(2, 0, 1).contiguous() if c > 1 else torch.from_numpy(a)[None]


def read_mask(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """A mask file (.npy, or an image; nonzero = missing) as a bool tensor of ``shape`` (or its H × W, broadcast)."""
    if not path.exists():
        raise VaekitError(f"--mask {path}: no such file, and not one of left, right, top, bottom, random")
    try:
        a = np.load(path, allow_pickle=False) if path.suffix == ".npy" else read_image(path)
    except (ValueError, OSError) as e:
        raise VaekitError(f"--mask {path}: not a readable .npy file ({e})") from None
    m = torch.from_numpy(np.asarray(a)) != 0
    if m.shape not in (shape, shape[-2:]):
        raise VaekitError(f"--mask {path}: shape {tuple(m.shape)}, expected {shape[-2:]} or {shape}")
    return m.expand(shape)


def read_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Images in a folder, or in one subfolder per class (the subfolder names become labels)."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))  # not .git, .ipynb_checkpoints
    groups = [(d, i) for i, d in enumerate(subdirs)] if subdirs else [(path, None)]
    if subdirs:
        loose = next((f for f in sorted(path.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), None)
        if loose is not None:
            raise VaekitError(f"{loose}: an image beside the class folders ({', '.join(d.name for d in subdirs)}) would "
                              "have no class; move it into one, or every image into the top folder")
    images, labels = [], []
    for folder, label in groups:
        found = [f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if subdirs and not found:
            raise VaekitError(f"{folder}: a class folder with no images ({', '.join(IMAGE_SUFFIXES)}); remove it or fill it")
        for f in found:
            a = read_image(f)
            if images and a.shape != images[0].shape:
                raise VaekitError(f"{f}: image of shape {a.shape}, expected {images[0].shape} like the others")
            images.append(a)
            labels.append(label)
    if not images:
        raise VaekitError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
    if subdirs:
        return x, np.asarray(labels, dtype=np.int64), [d.name for d in subdirs]
    return x, None, None


def read_csv(path: Path, label_column: str | None, condition_columns: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """A numeric table with a header row; every cell must be a finite number. ``label_column`` becomes
    integer labels, or ``condition_columns`` float attribute vectors (for a conditional VAE); either leaves x."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of the first name
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise VaekitError(f"{path}: cannot read CSV ({e})") from None
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise VaekitError(f"{path}: expected a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    twice = next((h for i, h in enumerate(header) if h in header[:i]), None)
    if twice is not None:
        raise VaekitError(f"{path}: the column {twice!r} is named twice in the header; give each column its own name")
    for column in ([label_column] if label_column is not None else []) + list(condition_columns):
        if column not in header:
            raise VaekitError(f"{path}: no column named {column!r} (columns: {', '.join(header)})")
    values = np.empty((len(body), len(header)), dtype=np.float64)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise VaekitError(f"{path}, line {i + 2}: {len(row)} cells, expected {len(header)}")
        for j, cell in enumerate(row):
            try:
                v = float(cell)
            except ValueError:
                raise VaekitError(f"{path}, line {i + 2}, column {header[j]!r}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise VaekitError(f"{path}, line {i + 2}, column {header[j]!r}: {cell!r} is not a finite number")
            values[i, j] = v
    if condition_columns:
        js = [header.index(c) for c in condition_columns]
        return np.delete(values, js, axis=1).astype(np.float32), values[:, js].astype(np.float32)
    if label_column is None:
        return values.astype(np.float32), None
    j = header.index(label_column)
    labels = values[:, j]
    odd = np.flatnonzero((labels != np.round(labels)) | (labels < 0))
    if len(odd):
        raise VaekitError(f"{path}, line {odd[0] + 2}, column {label_column!r}: label {labels[odd[0]]:g} is not a class "
                          "number (0, 1, 2, ...)")
    return np.delete(values, j, axis=1).astype(np.float32), labels.astype(np.int64)

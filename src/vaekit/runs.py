"""Opening a run: the data a config names, the config resolved against it, the device, a trained model with its data.

What every command does before its own work, in one place: ``prepare`` loads and
resolves, ``choose_device`` reads ``train.device``, ``open_run`` gives a run's model
and data set.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import distributed
from .config import Config
from .data import Dataset, load_dataset
from .errors import VaekitError
from .models import Autoencoder


def resolve(config: Config, dataset: Dataset) -> Config:
    """Fill the fields left "auto" from the data: input shape, likelihood, binarization."""
    likelihood = dataset.likelihood if config.model.likelihood == "auto" else config.model.likelihood
    binarize = config.data.binarize
    if binarize == "auto":
        binarize = "dynamic" if likelihood == "bernoulli" and dataset.kind == "image" else "none"
    n_classes = config.model.n_classes
    if config.model.kind == "cvae" and n_classes is None and config.data.condition_columns:
        n_classes = len(config.data.condition_columns)
    elif config.model.kind == "cvae" and n_classes is None:
        y = getattr(dataset.train, "y", None)
        if y is None:
            raise VaekitError(f"model.kind=cvae needs labels, and data {dataset.name!r} has none")
        n_classes = len(dataset.classes) if dataset.classes else int(y.max()) + 1
    return replace(config, data=replace(config.data, binarize=binarize),
                   model=replace(config.model, likelihood=likelihood, input_shape=tuple(dataset.shape), n_classes=n_classes))


def prepare(config: Config, progress: bool = False) -> tuple[Config, Dataset]:
    """Load the data a config names and resolve the config against it."""
    dataset = load_dataset(config.data, progress=progress)
    config = resolve(config, dataset)
    if config.model.likelihood == "bernoulli":
        dataset.check_unit_range()
    dataset.binarize(config.data.binarize)
    return config, dataset


def choose_device(name: str, world: distributed.World = distributed.World()) -> torch.device:
    """The device ``train.device`` names; with several processes on CUDA, the one of this LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world.size > 1:
        name = f"cuda:{world.local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VaekitError(f"train.device: {name!r} is not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VaekitError(f"train.device: {name!r} asked for, but this machine has no CUDA device")
    return device


def open_data(config: Config, progress: bool = False) -> Dataset:
    """The data set a run's config names, binarized as the run was."""
    return prepare(config, progress)[1]


def open_run(run: str | Path, device: str | torch.device = "auto", data: str | None = None, data_dir: str | None = None,
             progress: bool = False) -> tuple[Autoencoder, Dataset]:
    """A run's model on ``device`` and its data set. ``data`` names other data of the same shape: a file's rows
    become the test split, every one of them; a named data set replaces the run's."""
    model = ckpt.load(run, choose_device(device) if isinstance(device, str) else device)
    cfg = model.config
    overrides: dict = {} if data_dir is None else {"data_dir": data_dir}
    if data is not None and Path(data).exists():
        overrides["test"] = str(Path(data).resolve())
    elif data is not None:
        overrides.update(name=data, binarize="auto")
    dataset = open_data(replace(cfg, data=replace(cfg.data, **overrides)), progress)
    if tuple(dataset.shape) != model.input_shape:
        raise VaekitError(f"data {dataset.name!r} has rows of shape {tuple(dataset.shape)}, but the model takes {model.input_shape}")
    return model, dataset

"""Opening a run: the data a config names, the config resolved against it, the device, a trained model with its data.

What every command does before its own work, in one place: ``prepare`` loads and
resolves, ``choose_device`` reads ``train.device``, ``open_run`` gives a run's model
and data set.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import distributed
from .config import Config, DataConfig, load_config
from .data import Dataset, load_dataset
from .data.arrays import as_dataset
from .distributions import Bernoulli
from .errors import VaekitError
from .models import Autoencoder, use_objective
from .objectives import Objective

# Keys of a run's config that may change when it is resumed; anything else would make it another run.
RESUMABLE = {"epochs", "time_budget", "max_steps", "early_stopping", "checkpoint_every", "checkpoint_steps", "device", "threads", "tensorboard",
             "precision", "compile", "fused", "flush_denormal"}


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
                   model=replace(config.model, likelihood=likelihood, input_shape=tuple(dataset.shape), n_classes=n_classes,
                                 objective=config.model.objective_name))


IN_MEMORY = "(in memory)"  # data.name of a run fitted on data in memory without a run directory to keep it


def prepare(config: Config, progress: bool = False) -> tuple[Config, Dataset]:
    """Load the data a config names and resolve the config against it. The name "data.npz" is the run
    directory's own copy of data it was fitted on in memory."""
    data = config.data
    if data.name == IN_MEMORY:
        raise VaekitError("this model was fitted on data in memory without out=, so no copy of its data was kept; "
                          "give the data to evaluate on (vaekit.evaluate(model, x))")
    if data.name == ckpt.DATA:
        data = replace(data, name=str(Path(config.out) / ckpt.DATA))
    folder = Path(data.name)
    if config.out is not None and folder.is_dir() and Path(config.out).resolve().is_relative_to(folder.resolve()):
        raise VaekitError(f"--out {config.out}: inside the data folder {data.name}, where the run's own files would be "
                          "read as data next time; choose a run directory outside it")
    dataset = load_dataset(data, progress=progress)
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


def prepare_memory(model: Autoencoder, data: Any, val: Any, test: Any, out: str | Path | None, objective: Objective | str | None,
                   train: dict[str, Any]) -> tuple[Config, Dataset]:
    """``prepare`` for ``fit(model, data, ...)``: the data in memory split, the model's input shape and objective
    set, and the run's config: the model as it describes itself, the data as data.npz of the run directory."""
    config = Config.from_dict({"train": train}, source="fit()")
    dataset = as_dataset(data, val, test)
    if model.input_shape is None:
        model.input_shape = tuple(dataset.shape)
    if model.input_shape != tuple(dataset.shape):
        raise VaekitError(f"fit: the data has rows of shape {tuple(dataset.shape)}, but the model takes {model.input_shape}")
    if issubclass(model.likelihood, Bernoulli):
        dataset.check_unit_range()
    use_objective(model, objective)
    return replace(config, out=str(out) if out is not None else None, model=model.describe(),
                   data=DataConfig(name=ckpt.DATA if out is not None else IN_MEMORY, binarize="none")), dataset


def open_data(config: Config, progress: bool = False) -> Dataset:
    """The data set a run's config names, binarized as the run was."""
    return prepare(config, progress)[1]


def open_run(run: str | Path, device: str | torch.device = "auto", data: str | None = None, data_dir: str | None = None,
             progress: bool = False, split: str = "test") -> tuple[Autoencoder, Dataset]:
    """A run's model on ``device`` and its data set. ``data`` names other data of the same shape: a file's rows
    become the test split, every one of them (``split`` must then be "test"); a named data set replaces the run's."""
    model = ckpt.load(run, choose_device(device) if isinstance(device, str) else device)
    cfg = model.config
    overrides: dict = {} if data_dir is None else {"data_dir": data_dir}
    if data is not None and Path(data).exists():
        if split != "test":
            raise VaekitError(f"--data {data}: a file's rows are evaluated as the test split; --split {split} is the run's own")
        overrides["test"] = str(Path(data).resolve())
    elif data is not None:
        overrides.update(name=data, binarize="auto")
    dataset = open_data(replace(cfg, data=replace(cfg.data, **overrides)), progress)
    if tuple(dataset.shape) != model.input_shape:
        raise VaekitError(f"data {dataset.name!r} has rows of shape {tuple(dataset.shape)}, but the model takes {model.input_shape}")
    return model, dataset


def train_config(config_file: str | None, assignments: list[str], out: str | None, resume: bool,
                 preset: list[str] = ()) -> Config:
    """The config ``vaekit train`` runs: a resumed run's own config.json, else the file's or the defaults, with
    the command line's ``section.key=value`` assignments over it and a preset's under them."""
    config = load_config(config_file) if config_file else Config()
    where = Path(out or config.out)
    if resume:
        if not (where / ckpt.CONFIG).exists():
            raise VaekitError(f"{where}: no run to resume ({ckpt.CONFIG} missing)")
        config = ckpt.read_config(where)
    return config.override(assignments, defaults=preset)


def check_resumable(stored: Config | None, config: Config, out: Path) -> None:
    """Refuse to resume with a config that makes it another run: only the keys in RESUMABLE may differ."""
    if stored is None:
        raise VaekitError(f"{out}: the checkpoint has no {ckpt.WEIGHTS}; nothing to resume")
    a, b = stored.to_dict(), config.to_dict()
    for section in ("data", "model", "train"):
        for k, v in a[section].items():
            if b[section][k] != v and not (section == "train" and k in RESUMABLE):
                raise VaekitError(f"{out}: cannot resume with {section}.{k}={b[section][k]!r}; the run was made with {v!r}")

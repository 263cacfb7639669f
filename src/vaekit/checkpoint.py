"""Run directories: config.json, model.safetensors, trainer.pt, metrics.jsonl.

Every file is written through ``vaekit.files.write_atomic``, so a crash mid-write leaves the previous version
intact. trainer.pt is the checkpoint, one file renamed into place at once: the weights, optimizer, noise and
loop state of one step together; model.safetensors, written after it, is the weights every other command
reads. Opening a run never runs code: weights are safetensors, trainer.pt is read with ``weights_only=True``
and every tensor in it is checked against the model before any is used.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import CUSTOM, Config, ModelConfig
from .data.readers import SPLITS
from .errors import VaekitError
from .files import read_json, write_atomic
from .models import Autoencoder, build, objective_from_config

CONFIG, WEIGHTS, BEST, TRAINER, METRICS = "config.json", "model.safetensors", "best.safetensors", "trainer.pt", "metrics.jsonl"
DATA = "data.npz"  # the splits of a run trained from data in memory, so that every command finds them


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The model's state dict as safetensors, on the CPU, written atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, lambda tmp: save_file(tensors, tmp))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights, naming the first tensor that does not fit the architecture."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise VaekitError(f"{path}: not a readable safetensors file ({e})") from None
    load_state(model, tensors, path)


def load_state(model: torch.nn.Module, tensors: Mapping[str, Any], source: Path) -> None:
    """Load a state dict after ``check_state`` has passed it."""
    check_state(model, tensors, source)
    model.load_state_dict(dict(tensors))


def check_state(model: torch.nn.Module, tensors: Mapping[str, Any], source: Path) -> None:
    """Refuse a state dict unless every tensor of the model's is there with its shape and dtype and finite values,
    none besides."""
    expected = model.state_dict()
    if not isinstance(tensors, Mapping):
        raise VaekitError(f"{source}: the weights are a {type(tensors).__name__}, expected a mapping of names to tensors")
    for k, v in expected.items():
        t = tensors.get(k)
        if not isinstance(t, torch.Tensor):
            raise VaekitError(f"{source}: no tensor {k!r}; the checkpoint is of another architecture than its config.json")
        if t.shape != v.shape:
            raise VaekitError(f"{source}: tensor {k!r} has shape {tuple(t.shape)}, the architecture in config.json needs {tuple(v.shape)}")
        if t.dtype != v.dtype:
            raise VaekitError(f"{source}: tensor {k!r} is {t.dtype}, the model's is {v.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise VaekitError(f"{source}: tensor {k!r} holds NaN or infinite values; the training that wrote it diverged "
                              "(retrain with a lower train.lr or a train.grad_clip)")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise VaekitError(f"{source}: unexpected tensor {extra[0]!r}; the checkpoint is of another architecture than its config.json")


def save_trainer_state(state: dict[str, Any], path: Path) -> None:
    """The trainer's state (tensors and numbers only) with torch.save, written atomically."""
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer's state, read with ``weights_only=True`` so that no code in it runs; a dict, its contents unchecked."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError for bad files
        raise VaekitError(f"{path}: unreadable trainer state ({type(e).__name__}); it holds more than tensors and numbers, or is damaged") from None
    if not isinstance(state, dict):
        raise VaekitError(f"{path}: the trainer state is a {type(state).__name__}, expected the dict vaekit writes")
    return state


def read_config(run: str | Path) -> Config:
    """The resolved Config a run directory's config.json holds, validated as any config is."""
    run = _run_dir(run, (CONFIG,))
    d = read_json(run / CONFIG, "run's config")
    model = d.get("model") if isinstance(d, dict) else None
    if isinstance(model, dict) and model.get("kind") in ("ae", "dae") and model.get("objective") == "elbo":
        model["objective"] = "reconstruction"  # written before objectives were objects, when every kind said "elbo"
    return Config.from_dict(d, source=str(run / CONFIG))


def load(run: str | Path, device: str | torch.device = "cpu", model: Autoencoder | None = None) -> Autoencoder:
    """The trained model of a run directory, in eval mode, with the run's resolved Config at ``model.config``.

    Built from config.json's names (registered parts, vaekit's or a user's), or, given ``model``, the weights
    go into that module (one built by hand from the same parts); nothing in the run directory is executed.
    """
    cfg = read_config(run)
    if cfg.model.input_shape is None:
        raise VaekitError(f"{_run_dir(run) / CONFIG}: model.input_shape is null; a trained run records the shape of its data, "
                          "such as [1, 28, 28]")
    if model is None:
        custom = [k for k in ("kind", "net", "likelihood", "prior") if getattr(cfg.model, k) == CUSTOM]
        if custom:
            raise VaekitError(f"{_run_dir(run)}: the model's {', '.join(custom)} were built by hand (\"custom\" in {CONFIG}); "
                              "build the same modules and load into them with vaekit.load(dir, model=...)")
        model = build(cfg.model)
    else:
        _check_matches(model, cfg.model, _run_dir(run))
    if cfg.model.objective != "auto":
        model.objective = objective_from_config(cfg.model)
    load_weights(model, _run_dir(run) / WEIGHTS)
    model.config = replace(cfg, out=str(run))  # where the run is now, which is where its own files are found
    return model.to(device).eval()


def _check_matches(model: Any, cfg: ModelConfig, run: Path) -> None:
    """A module given to ``load`` must be the model config.json describes: kind, likelihood, prior and sizes."""
    if not isinstance(model, Autoencoder):
        raise VaekitError(f"load(..., model=): got a {type(model).__name__}; expected a vaekit model such as vaekit.VAE(encoder, decoder, ...)")
    if model.input_shape is None:
        model.input_shape = cfg.input_shape
    mine = model.describe()
    for key in ("kind", "likelihood", "prior", "latent_dim", "input_shape", "n_classes"):
        want, got = getattr(cfg, key), getattr(mine, key)
        if CUSTOM not in (want, got) and want != got:
            raise VaekitError(f"{run / CONFIG}: the run's model.{key} is {_plain(want)!r}, the model given has {_plain(got)!r}")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def save_splits(dataset, path: Path) -> None:
    """A data set's three splits as one pre-split .npz of train/valid/test arrays (and train_labels, ...)."""
    arrays: dict[str, np.ndarray] = {}
    for key, part in zip(SPLITS, dataset.parts):
        arrays[key] = part.x.numpy()
        if part.y is not None:
            arrays[f"{key}_labels"] = part.y.numpy()

    def write(tmp):  # through a file object: given a name, numpy would add its own suffix to the temporary one
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write)


def _run_dir(run: str | Path, needs: tuple[str, ...] = (CONFIG, WEIGHTS)) -> Path:
    run = Path(run)
    if run.is_file():
        with open(run, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" or head == b"PK":
            raise VaekitError(f"{run}: a pickle (torch.save) file; vaekit loads only run directories with "
                              f"{WEIGHTS} and {CONFIG}, because unpickling can run arbitrary code")
        raise VaekitError(f"{run}: a file; expected a run directory holding {CONFIG} and {WEIGHTS}")
    if not run.is_dir():
        raise VaekitError(f"{run}: no such run directory")
    for name in needs:
        if not (run / name).exists():
            raise VaekitError(f"{run}: not a run directory, {name} is missing")
    return run

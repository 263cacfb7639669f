"""``fit``: train a model from a Config, or a model you built on data in memory, through the one trainer
(``vaekit.trainer``), with the process-wide set-up a run needs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import distributed
from .config import Config
from .data import Dataset
from .errors import VaekitError
from .files import RunLock, remove_temporaries
from .models import Autoencoder, build
from .objectives import Objective
from .runs import choose_device, prepare, prepare_memory
from .steps import Step
from .trainer import Hook, Run, Trainer


def fit(model: Autoencoder | Config, data: Any = None, *, val: Any = None, test: Any = None, out: str | Path | None = None,
        objective: Objective | str | None = None, progress: bool = True, resume: bool = False,
        step: Callable[["Trainer"], Step] | None = None, hooks: Mapping[str, Hook] | None = None, **train: Any) -> Run:
    """Train a model; returns a Run with the trained model and its per-epoch history.

    ``fit(config)`` builds the model a Config describes, on the data it names, and writes the run directory at
    ``config.out``. ``fit(model, data, val=..., test=..., out=...)`` trains a model you built (any encoder and
    decoder modules) on data in memory: a float tensor or array of rows (N, ...), an (x, y) pair, or a
    ``torch.utils.data.Dataset`` yielding x or (x, y). Without ``val`` the last tenth of ``data`` is held out
    for validation; without ``test`` the validation rows stand in for it. ``objective`` is an objective object
    or a registered name (default: the model's own), and ``**train`` are TrainConfig fields (``epochs=5``,
    ``lr=1e-3``, ...). With ``out`` the run directory holds config.json, the weights, the checkpoints and
    the data as data.npz, so every command works on it; without, nothing is written.

    With ``resume``, continue the run found at ``out`` from its last checkpoint; only the keys in runs.RESUMABLE may
    differ from the stored config. ``step`` builds the per-minibatch update (default ``steps.GradientStep``) and
    ``hooks`` maps "on_step", "on_epoch_end" and "on_checkpoint" to functions called with the Trainer.
    """
    if isinstance(model, Config):
        if data is not None or val is not None or test is not None or objective is not None or out is not None or train:
            raise VaekitError("fit(config) takes the data, out and training settings from the Config; "
                              "fit(model, data, ...) is the form that takes them as arguments")
        return _start(model, resume, progress, step=step, hooks=hooks)
    if not isinstance(model, Autoencoder):
        raise VaekitError(f"fit: got a {type(model).__name__}; expected a vaekit model (such as vaekit.VAE(encoder, decoder, ...)) "
                          "or a vaekit.Config")
    if data is None:
        raise VaekitError("fit(model, data): no training data given")
    config, dataset = prepare_memory(model, data, val, test, out, objective, train)
    return _start(config, resume, progress, model, dataset, step, hooks)


def _start(config: Config, resume: bool, progress: bool, model: Autoencoder | None = None, dataset: Dataset | None = None,
           step: Callable[["Trainer"], Step] | None = None, hooks: Mapping[str, Hook] | None = None) -> Run:
    """The process-wide set-up a run needs (device, threads, denormals, the process group), then the run."""
    world = distributed.world_from_env()
    tc = config.train
    device = choose_device(tc.device, world)
    if tc.flush_denormal and device.type == "cpu":
        # Adam's moments of weights whose gradient is always 0 (MNIST's blank border pixels) decay by β₁ per step into
        # the denormal range within ~800 steps and stay there (0.9 × the smallest denormal rounds back to it), and
        # every later step pays the CPU's slow path for them. Threads take the mode when they are created, so the
        # intra-op pool has it too when this is the process's first parallel work, as under the CLI.
        torch.set_flush_denormal(True)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    created = distributed.join(world, device)
    try:
        return _fit(config, resume, progress and world.main, world, device, model, dataset, step, hooks)
    finally:
        distributed.leave(created)


def _fit(config: Config, resume: bool, progress: bool, world: distributed.World, device: torch.device,
         model: Autoencoder | None, dataset: Dataset | None, step: Callable[["Trainer"], Step] | None = None,
         hooks: Mapping[str, Hook] | None = None) -> Run:
    if dataset is None:
        if not world.main:
            distributed.barrier(world)  # rank 0 fetches the data first, so that one process downloads
        config, dataset = prepare(config, progress)
        if world.main:
            distributed.barrier(world)
    if model is None:
        with torch.random.fork_rng(devices=[]):  # the seed fixes initialization without touching the caller's RNG
            torch.manual_seed(config.train.seed)
            model = build(config.model)
    if config.out is None or not world.main:
        return Trainer(config, model, dataset, world, device, resume, progress, step, hooks).run()
    with RunLock(Path(config.out)):  # one trainer per run directory; rank 0 writes for all
        remove_temporaries(Path(config.out))  # what a killed writer left; under the lock, no writer is mid-write
        return Trainer(config, model, dataset, world, device, resume, progress, step, hooks).run()

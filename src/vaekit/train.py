"""One trainer for every model: the AEVB minibatch loop with checkpoints that resume exactly.

The trainer owns the device and all randomness: parameters are initialized from
the seed, each epoch's order from (seed, epoch), and every other draw
(binarization, ε, corruption) from one generator whose state is checkpointed, so
an interrupted and resumed run ends bit-identical to an uninterrupted one on CPU.

What a variant changes is a step or a hook, never a second loop: ``step`` builds the update done per
minibatch (by default ``steps.GradientStep``: the model's objective through autograd or the
hand-derived step; wake-sleep is another), and ``hooks`` are called as ``hook(trainer)`` at
``on_step``, ``on_epoch_end`` and ``on_checkpoint``, with the model, the state and the last
epoch's record on the trainer.

Started by torchrun, the same loop trains with DistributedDataParallel (see
``vaekit.distributed``): every rank keeps its share of each global batch, and only
rank 0 writes. Each rank then draws its noise from (seed, rank, step), so a run
resumed at another number of processes continues with fresh, independent draws.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import checkpoint as ckpt
from . import distributed, divergence
from .config import Config
from .data import Dataset, MemoryPart
from .errors import VaekitError
from .evaluation import mean_loss
from .files import RunLock, remove_temporaries, write_text
from .limits import check_training_fits
from .models import Autoencoder, build
from .objectives import Objective, kl_warmup
from .runs import check_resumable, choose_device, prepare, prepare_memory
from .steps import GradientStep, Step
from .trainstate import Checkpoint, TrainState

CHECK_EVERY = 100  # steps between checks that the loss is finite (a check syncs with the device)
EVENTS = ("on_step", "on_epoch_end", "on_checkpoint")
Hook = Callable[["Trainer"], None]


@dataclass
class Run:
    """What ``fit`` returns: the trained model, its resolved config, and what was measured."""

    dir: Path | None  # None when fit was given no ``out``: nothing was written
    config: Config
    model: Autoencoder
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, float] | None = None
    stopped: str = "completed"  # or "max_steps", "early_stopping"
    data: Dataset | None = None  # the data it was trained on, split


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


class Trainer:
    """One run of the minibatch loop over ``dataset.train``: steps, the per-epoch record and validation,
    checkpoints, early stopping, and the test loss at the end."""

    def __init__(self, config: Config, model: Autoencoder, dataset: Dataset, world: distributed.World, device: torch.device,
                 resume: bool = False, progress: bool = False, step: Callable[["Trainer"], Step] | None = None,
                 hooks: Mapping[str, Hook] | None = None):
        unknown = sorted(set(hooks or {}) - set(EVENTS))
        if unknown:
            raise VaekitError(f"hook {unknown[0]!r}: expected one of {', '.join(EVENTS)}")
        self.config, self.model, self.dataset, self.world, self.device = config, model, dataset, world, device
        self.tc, self.hooks, self.progress = config.train, dict(hooks or {}), progress
        self.out = Path(config.out) if config.out else None
        self.state = TrainState()
        self.record: dict[str, Any] | None = None  # the last epoch's
        tc = self.tc
        self.noise = torch.Generator(device).manual_seed(tc.seed if world.size == 1 else _rank_seed(tc.seed, world.rank, 0))
        model.config = config
        check_training_fits(model, tc.batch_size)
        model.to(device)
        if self._has_run() and not resume:
            raise VaekitError(f"{self.out}: already holds a run; resume it with --resume (fit(..., resume=True)) or choose another --out")
        if world.size > 1 and step not in (None, GradientStep):
            raise VaekitError(f"step {getattr(step, '__name__', step)!r}: only the gradient step syncs its updates across processes; "
                              "train it in one process")
        saved = self._resume_state() if resume else None
        self.step = (step or GradientStep)(self)
        if saved is not None:
            if saved.step_kind != type(self.step).__name__:
                raise VaekitError(f"{self.out / ckpt.TRAINER}: written by the step {saved.step_kind}; resume it with the same step, "
                                  f"not {type(self.step).__name__}")
            try:
                self.step.load_state_dict(saved.step_state)
            except VaekitError as e:
                raise VaekitError(f"{self.out / ckpt.TRAINER}: {e}") from None
        if world.main and self.out is not None:
            write_text(self.out / ckpt.CONFIG, config.to_json())
            if config.data.name == ckpt.DATA and not (self.out / ckpt.DATA).exists():
                ckpt.save_splits(dataset, self.out / ckpt.DATA)
        self.train = _on_device(dataset.train, device)
        self.rows = None if world.size == 1 else (lambda n: distributed.shard(n, world))
        self.writer = _tensorboard(self.out) if tc.tensorboard and world.main and self.out is not None else None

    def _has_run(self) -> bool:
        return self.out is not None and (self.out / ckpt.TRAINER).exists()

    def _resume_state(self) -> Checkpoint | None:
        """Weights, loop state and noise from trainer.pt, every tensor checked before use; returns the checkpoint,
        whose step state (its optimizers') the step loads, or None for a run stopped before its first checkpoint,
        which starts afresh."""
        out, tc, world = self.out, self.tc, self.world
        if out is None:
            raise VaekitError("fit(..., resume=True) needs the run directory to resume: give out=")
        if not self._has_run():
            if (out / ckpt.WEIGHTS).exists():  # weights without the state that goes with them: never overwrite them
                raise VaekitError(f"{out}: {ckpt.WEIGHTS} is there but {ckpt.TRAINER} is missing, so the run cannot continue "
                                  "exactly; move the weights away to train afresh")
            return None
        stored = ckpt.read_config(out) if (out / ckpt.CONFIG).exists() else None
        check_resumable(stored, self.config, out)
        source = out / ckpt.TRAINER
        saved = Checkpoint.from_dict(ckpt.load_trainer_state(source), source, self.noise.get_state())
        if saved.state.epoch > tc.epochs:
            raise VaekitError(f"train.epochs={tc.epochs}: the run in {out} has already done {saved.state.epoch} epochs; "
                              f"resume it with --epochs {saved.state.epoch} or more")
        if saved.weights is None:  # written before trainer.pt held the weights: model.safetensors went with it
            ckpt.load_weights(self.model, out / ckpt.WEIGHTS)
        else:
            ckpt.load_state(self.model, saved.weights, source)
        self.state = saved.state
        if world.size == 1 and saved.world_size == 1:
            self.noise.set_state(saved.noise)
        else:  # rank 0's stream alone was saved: every rank starts a fresh one of its own
            self.noise.manual_seed(_rank_seed(tc.seed, world.rank, self.state.step))
        if self.state.stopped == "max_steps":
            self.state.stopped = None
        return saved

    def _trigger(self, event: str) -> None:
        if event in self.hooks:
            self.hooks[event](self)

    def save(self, buf: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> None:
        """A checkpoint: trainer.pt (weights, the loop's state with the step's and the noise's) as one file, then
        model.safetensors and the metrics so far. Mid-epoch, ``batch`` is the last step's minibatch, on which the
        weights must give a finite loss before they are kept (at the end of an epoch the validation loss did)."""
        s, out, world = self.state, self.out, self.world
        if out is None:
            return
        if batch is not None:
            divergence.check_weights(self, *batch)
        if s.batch:  # mid-epoch: the epoch's sums so far, over all ranks
            s.partial = distributed.sum_over_ranks(buf[: s.batch].clone(), world).cpu()
        if world.main:
            weights = {k: v.detach().to("cpu").clone() for k, v in self.model.state_dict().items()}
            state = Checkpoint(s, weights, type(self.step).__name__, self.step.state_dict(), self.noise.get_state(), world.size)
            ckpt.save_trainer_state(state.to_dict(), out / ckpt.TRAINER)
            ckpt.save_weights(self.model, out / ckpt.WEIGHTS)
            write_text(out / ckpt.METRICS, "".join(json.dumps(h) + "\n" for h in s.history))
        self._trigger("on_checkpoint")

    def run(self) -> Run:
        """Train until the epochs, max_steps or early stopping end it; the Run with the test loss."""
        s, tc = self.state, self.tc
        if s.stopped is None and tc.max_steps is not None and s.step >= tc.max_steps:
            s.stopped = "max_steps"
        run = Run(self.out, self.config, self.model, s.history, data=self.dataset)
        self.model.train()
        while s.epoch < tc.epochs and s.stopped is None:
            buf, t0 = self._epoch()
            if s.stopped == "max_steps":
                break
            self._end_epoch(buf, t0)
        if self.writer is not None:
            self.writer.close()
        run.stopped = s.stopped or "completed"
        if run.stopped != "max_steps":
            run.test = self._finish()
        return run

    def _epoch(self) -> tuple[torch.Tensor, float]:
        """The rest of the current epoch's steps (all of them unless resumed mid-epoch): per step, the loss,
        reconstruction and KL summed over this rank's rows, and the number of rows."""
        s, tc, world = self.state, self.tc, self.world
        n_steps = self.train.n_batches(tc.batch_size)
        buf = torch.zeros(n_steps, 4, device=self.device)
        if world.main:  # the saved partial sums are over all ranks
            buf[: s.batch] = s.partial.to(self.device)
        order = torch.Generator().manual_seed(tc.seed * 1_000_003 + s.epoch)
        bar = _bar(self.progress, n_steps, s.batch, f"epoch {s.epoch + 1}/{tc.epochs}")
        t0 = time.perf_counter() - s.seconds
        for x, y in self.train.batches(tc.batch_size, order, start=s.batch, noise=self.noise, device=self.device, rows=self.rows):
            n_global = min(tc.batch_size, len(self.train) - s.batch * tc.batch_size)
            n = len(x)
            if n == 0:  # a short last batch left this rank nothing: a zero-weight row keeps the collectives in step
                x, y = x.new_zeros((1, *x.shape[1:])), None if y is None else y.new_zeros((1, *y.shape[1:]))
            terms = self.step(x, y, kl_warmup(s.step, tc.kl_warmup_steps), self.noise, world.size * n / n_global)
            buf[s.batch, :3] = terms * n
            buf[s.batch, 3] = n
            s.batch += 1
            s.step += 1
            if bar is not None:
                bar.update()
            at_ckpt = bool(tc.checkpoint_steps) and s.step % tc.checkpoint_steps == 0
            at_max = tc.max_steps is not None and s.step >= tc.max_steps
            if at_ckpt or at_max or s.batch % CHECK_EVERY == 0:
                divergence.check_losses(self, buf)
                if bar is not None:
                    bar.set_postfix(loss=f"{(buf[s.batch - 1, 0] / buf[s.batch - 1, 3]).item():.2f}")
            self._trigger("on_step")
            if at_ckpt or at_max:
                s.seconds = time.perf_counter() - t0
                if at_max:
                    s.stopped = "max_steps"
                self.save(buf, (x, y))
                if at_max:
                    break
        if bar is not None:
            bar.close()
        return buf, t0

    def _end_epoch(self, buf: torch.Tensor, t0: float) -> None:
        """The epoch's record (train and validation terms), early stopping, and the epoch's checkpoint."""
        s, tc, world = self.state, self.tc, self.world
        divergence.check_losses(self, buf)
        seconds = time.perf_counter() - t0
        totals = distributed.sum_over_ranks(buf.sum(0), world)
        tr = (totals[:3] / totals[3]).tolist()
        val = mean_loss(self.model, self.dataset.val, device=self.device)  # every rank the same: it decides early stopping
        self.model.train()
        divergence.check_validation(self, val["loss"])
        self.record = {"epoch": s.epoch + 1, "step": s.step,
                       "train_loss": tr[0], "train_recon": tr[1], "train_kl": tr[2],
                       "val_loss": val["loss"], "val_recon": val["recon"], "val_kl": val["kl"],
                       "kl_weight": kl_warmup(s.step, tc.kl_warmup_steps),
                       "seconds": seconds, "samples_per_s": len(self.train) / seconds}
        s.history.append(self.record)
        if self.writer is not None:
            for k, v in self.record.items():
                if k not in ("epoch", "step"):
                    self.writer.add_scalar(k, v, s.epoch + 1)
        s.epoch, s.batch, s.partial, s.seconds = s.epoch + 1, 0, torch.zeros(0, 4), 0.0
        if val["loss"] < s.best:
            s.best, s.bad_epochs = val["loss"], 0
            if tc.early_stopping and world.main and self.out is not None:
                ckpt.save_weights(self.model, self.out / ckpt.BEST)
        else:
            s.bad_epochs += 1
            if tc.early_stopping and s.bad_epochs >= tc.early_stopping:
                s.stopped = "early_stopping"
        self._trigger("on_epoch_end")
        if s.epoch % tc.checkpoint_every == 0 or s.epoch == tc.epochs or s.stopped:
            self.save(buf)

    def _finish(self) -> dict[str, float] | None:
        """The best weights back under early stopping, and the test loss in summary.json (rank 0)."""
        out, world, tc = self.out, self.world, self.tc
        distributed.barrier(world)  # rank 0's files are complete before any rank reads them
        if out is not None and tc.early_stopping and (out / ckpt.BEST).exists():
            ckpt.load_weights(self.model, out / ckpt.BEST)
            if world.main:
                ckpt.save_weights(self.model, out / ckpt.WEIGHTS)
        self.model.eval()
        if not world.main:
            return None
        test = mean_loss(self.model, self.dataset.test, device=self.device)
        if out is not None:
            write_text(out / "summary.json", json.dumps({"stopped": self.state.stopped or "completed", "epochs": self.state.epoch,
                                                              "steps": self.state.step, **{f"test_{k}": v for k, v in test.items()}},
                                                             indent=2) + "\n")
        return test


def _on_device(part, device: torch.device):
    """The training split on the accelerator when it takes at most half the free memory: batches are then cut
    and binarized there, with no host-to-device copy per step."""
    if device.type != "cuda" or not isinstance(part, MemoryPart):
        return part
    free, _ = torch.cuda.mem_get_info(device)
    size = part.x.numel() * part.x.element_size() + (0 if part.y is None else part.y.numel() * part.y.element_size())
    return part.to(device) if size <= free // 2 else part


def _rank_seed(seed: int, rank: int, step: int) -> int:
    return hash((seed, rank, step)) % 2**63  # ints hash the same in every process


def _bar(progress: bool, total: int, initial: int, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional extra is not installed: metrics.jsonl alone
        return None
    return SummaryWriter(str(out / "tensorboard"))

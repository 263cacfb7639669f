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
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import checkpoint as ckpt
from . import distributed, divergence, schedules
from .averaging import WeightAverage
from .config import Config
from .data import Dataset, MemoryPart
from .errors import VaekitError
from .evaluation import mean_loss, validation_bound
from .files import write_text
from .limits import check_training_fits
from .models import Autoencoder
from .objectives import kl_warmup
from .runs import check_resumable
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
        if saved is None and config.model.init_output_bias:
            model.init_output_bias(*dataset.train.moments())
        self.average = WeightAverage(model, tc.ema_decay) if tc.ema else None
        if saved is not None and self.average is not None:
            if saved.averaged is None:
                raise VaekitError(f"{self.out / ckpt.TRAINER}: holds no weight average, but train.ema is on")
            self.average.load_state_dict(saved.averaged, self.out / ckpt.TRAINER)
        self.step = (step or GradientStep)(self)
        self.lr: float | None = None  # the rate the optimizers hold, once the schedule has set it
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
        if saved.state.epoch > tc.epochs and tc.time_budget is None:
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
            averaged = None if self.average is None else self.average.state_dict()
            state = Checkpoint(s, weights, type(self.step).__name__, self.step.state_dict(), self.noise.get_state(), world.size,
                               averaged)
            ckpt.save_trainer_state(state.to_dict(), out / ckpt.TRAINER)
            with self._averaged():  # the model a run directory holds is the averaged one, under train.ema
                ckpt.save_weights(self.model, out / ckpt.WEIGHTS)
            write_text(out / ckpt.METRICS, "".join(json.dumps(h) + "\n" for h in s.history))
        self._trigger("on_checkpoint")

    def run(self) -> Run:
        """Train until the epochs, max_steps or early stopping end it; the Run with the test loss."""
        s, tc = self.state, self.tc
        if s.stopped is None and tc.max_steps is not None and s.step >= tc.max_steps:
            s.stopped = "max_steps"
        run = Run(self.out, self.config, self.model, s.history, data=self.dataset)
        self.clock = (time.perf_counter(), s.trained_seconds)  # the time budget's: now, and the time trained before
        self.model.train()
        while s.epoch < self._epochs() and s.stopped is None:
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
        schedule = self._schedule(n_steps)
        bar = _bar(self.progress, n_steps, s.batch, f"epoch {s.epoch + 1}/{'~' if tc.time_budget else ''}{self._epochs()}")
        t0 = time.perf_counter() - s.seconds
        for x, y in self.train.batches(tc.batch_size, order, start=s.batch, noise=self.noise, device=self.device, rows=self.rows):
            n_global = min(tc.batch_size, len(self.train) - s.batch * tc.batch_size)
            n = len(x)
            if n == 0:  # a short last batch left this rank nothing: a zero-weight row keeps the collectives in step
                x, y = x.new_zeros((1, *x.shape[1:])), None if y is None else y.new_zeros((1, *y.shape[1:]))
            self._set_lr(schedule(s.step))
            terms = self.step(x, y, kl_warmup(s.step, tc.kl_warmup_steps), self.noise, world.size * n / n_global)
            buf[s.batch, :3] = terms * n
            buf[s.batch, 3] = n
            s.batch += 1
            s.step += 1
            if self.average is not None:
                self.average.update(s.step)
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
        with self._averaged():  # every rank the same: it decides early stopping
            val = mean_loss(self.model, self.dataset.val, device=self.device)
            bound = None if tc.select_on == "loss" else self._bound(val)
        self.model.train()
        divergence.check_validation(self, val["loss"])
        self.record = {"epoch": s.epoch + 1, "step": s.step,
                       "train_loss": tr[0], "train_recon": tr[1], "train_kl": tr[2],
                       "val_loss": val["loss"], "val_recon": val["recon"], "val_kl": val["kl"],
                       **({} if bound is None else {f"val_{tc.select_on}": bound}),
                       "kl_weight": kl_warmup(s.step, tc.kl_warmup_steps), "lr": self.lr,
                       "seconds": seconds, "samples_per_s": len(self.train) / seconds}
        s.history.append(self.record)
        if self.writer is not None:
            for k, v in self.record.items():
                if k not in ("epoch", "step"):
                    self.writer.add_scalar(k, v, s.epoch + 1)
        s.epoch, s.batch, s.partial, s.seconds = s.epoch + 1, 0, torch.zeros(0, 4), 0.0
        if tc.time_budget is not None:
            self._plan()
        figure = val["loss"] if bound is None else -bound  # lower is better
        if figure < s.best:
            s.best, s.bad_epochs = figure, 0
            if self._chooses() and world.main and self.out is not None:
                with self._averaged():
                    ckpt.save_weights(self.model, self.out / ckpt.BEST)
        else:
            s.bad_epochs += 1
            if tc.early_stopping and s.bad_epochs >= tc.early_stopping:
                s.stopped = "early_stopping"
        self._trigger("on_epoch_end")
        if s.epoch % tc.checkpoint_every == 0 or s.epoch >= self._epochs() or s.stopped:
            self.save(buf)

    def _epochs(self) -> int:
        """The epochs this run trains: train.epochs, or under a time budget the estimate so far (one more epoch
        until the first has been timed)."""
        if self.tc.time_budget is None:
            return self.tc.epochs
        return self.state.planned_epochs or self.state.epoch + 1

    def _schedule(self, steps_per_epoch: int) -> schedules.Schedule:
        """The learning-rate schedule over the run's planned steps (under a time budget, re-planned each epoch;
        before the first epoch is timed its length is unknown and the schedule stays at its start)."""
        tc, s = self.tc, self.state
        planned = tc.epochs if tc.time_budget is None else s.planned_epochs
        total = planned * steps_per_epoch if planned else 2**62
        if tc.max_steps is not None:
            total = min(total, tc.max_steps)
        return schedules.from_config(tc, steps_per_epoch, total)

    def _set_lr(self, lr: float) -> None:
        if lr != self.lr:
            for opt in self.step.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr
            self.lr = lr

    def _plan(self) -> None:
        """Under a time budget: the wall-clock time trained so far (checkpoints included, over every session), and
        the epochs the budget reaches re-estimated from it, ending at the epoch boundary nearest to the budget."""
        s, budget = self.state, self.tc.time_budget
        s.trained_seconds = self.clock[1] + time.perf_counter() - self.clock[0]
        per = s.trained_seconds / s.epoch
        first = s.planned_epochs == 0
        s.planned_epochs = max(s.epoch, s.epoch + round((budget - s.trained_seconds) / per))
        if first and self.progress:
            print(f"vaekit: time budget {budget:g} s at {per:.2f} s an epoch: about {s.planned_epochs} epochs", file=sys.stderr)

    def _bound(self, val: dict[str, float]) -> float:
        """The validation figure ``train.select_on`` names: the ELBO (from the validation terms ``val``), or the
        IWAE bound with ``select_k`` samples."""
        if self.tc.select_on == "elbo":
            return -(val["recon"] + val["kl"])
        return validation_bound(self.model, self.dataset.val, self.tc.select_k, self.device)

    def _chooses(self) -> bool:
        """Whether the run ends with its best weights on the validation figure rather than its last."""
        return bool(self.tc.early_stopping) or self.tc.select_on != "loss"

    def _averaged(self):
        return self.average.applied() if self.average is not None else nullcontext()

    def _finish(self) -> dict[str, float] | None:
        """The averaged weights, or the best ones when the run chooses, and the test loss in summary.json (rank 0)."""
        out, world = self.out, self.world
        distributed.barrier(world)  # rank 0's files are complete before any rank reads them
        if self.average is not None:
            self.average.apply()
        if out is not None and self._chooses() and (out / ckpt.BEST).exists():
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

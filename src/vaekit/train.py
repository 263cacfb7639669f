"""One trainer for every model: the AEVB minibatch loop with checkpoints that resume exactly.

The trainer owns the device and all randomness: parameters are initialized from
the seed, each epoch's order from (seed, epoch), and every other draw
(binarization, ε, corruption) from one generator whose state is checkpointed, so
an interrupted and resumed run ends bit-identical to an uninterrupted one on CPU.

Started by torchrun, the same loop trains with DistributedDataParallel (see
``vaekit.distributed``): every rank keeps its share of each global batch, and only
rank 0 writes. Each rank then draws its noise from (seed, rank, step), so a run
resumed at another number of processes continues with fresh, independent draws.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import distributed, fused
from .config import Config, DataConfig
from .data import Dataset, MemoryPart
from .data.arrays import as_dataset
from .distributions import Bernoulli
from .errors import VaekitError
from .evaluation import mean_loss
from .models import Autoencoder, build, use_objective
from .objectives import Objective, kl_warmup
from .runs import choose_device, prepare

# Keys of a run's config that may change when it is resumed; anything else would make it another run.
RESUMABLE = {"epochs", "max_steps", "early_stopping", "checkpoint_every", "checkpoint_steps", "device", "threads", "tensorboard",
             "precision", "compile", "fused", "flush_denormal"}
CHECK_EVERY = 100  # steps between checks that the loss is finite (a check syncs with the device)


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


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    # fused: one kernel over all parameters; on 2 CPU cores Adam's step is 4× faster than the foreach default
    kinds = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
    return kinds[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def fit(model: Autoencoder | Config, data: Any = None, *, val: Any = None, test: Any = None, out: str | Path | None = None,
        objective: Objective | str | None = None, progress: bool = True, resume: bool = False, **train: Any) -> Run:
    """Train a model; returns a Run with the trained model and its per-epoch history.

    ``fit(config)`` builds the model a Config describes, on the data it names, and writes the run directory at
    ``config.out``. ``fit(model, data, val=..., test=..., out=...)`` trains a model you built (any encoder and
    decoder modules) on data in memory: a float tensor or array of rows (N, ...), an (x, y) pair, or a
    ``torch.utils.data.Dataset`` yielding x or (x, y). Without ``val`` the last tenth of ``data`` is held out
    for validation; without ``test`` the validation rows stand in for it. ``objective`` is an objective object
    or a registered name (default: the model's own), and ``**train`` are TrainConfig fields (``epochs=5``,
    ``lr=1e-3``, ...). With ``out`` the run directory holds config.json, the weights, the checkpoints and
    the data as data.npz, so every command works on it; without, nothing is written.

    With ``resume``, continue the run found at ``out`` from its last checkpoint; only the keys in RESUMABLE may
    differ from the stored config.
    """
    if isinstance(model, Config):
        if data is not None or val is not None or test is not None or objective is not None or out is not None or train:
            raise VaekitError("fit(config) takes the data, out and training settings from the Config; "
                              "fit(model, data, ...) is the form that takes them as arguments")
        return _start(model, resume, progress)
    if not isinstance(model, Autoencoder):
        raise VaekitError(f"fit: got a {type(model).__name__}; expected a vaekit model (such as vaekit.VAE(encoder, decoder, ...)) "
                          "or a vaekit.Config")
    if data is None:
        raise VaekitError("fit(model, data): no training data given")
    config = Config.from_dict({"train": train}, source="fit()")
    dataset = as_dataset(data, val, test)
    if model.input_shape is None:
        model.input_shape = tuple(dataset.shape)
    if model.input_shape != tuple(dataset.shape):
        raise VaekitError(f"fit: the data has rows of shape {tuple(dataset.shape)}, but the model takes {model.input_shape}")
    if issubclass(model.likelihood, Bernoulli):
        dataset.check_unit_range()
    use_objective(model, objective)
    where = Path(out).resolve() if out is not None else None
    name = str(where / ckpt.DATA) if where is not None else "(in memory)"
    config = replace(config, out=str(out) if out is not None else "", model=model.describe(),
                     data=DataConfig(name=name, binarize="none"))
    return _start(config, resume, progress, model, dataset)


def _start(config: Config, resume: bool, progress: bool, model: Autoencoder | None = None, dataset: Dataset | None = None) -> Run:
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
        return _fit(config, resume, progress and world.main, world, device, model, dataset)
    finally:
        distributed.leave(created)


def _fit(config: Config, resume: bool, progress: bool, world: distributed.World, device: torch.device,
         model: Autoencoder | None, dataset: Dataset | None) -> Run:
    tc = config.train
    if dataset is None:
        if not world.main:
            distributed.barrier(world)  # rank 0 fetches the data first, so that one process downloads
        config, dataset = prepare(config, progress)
        if world.main:
            distributed.barrier(world)
    if model is None:
        with torch.random.fork_rng(devices=[]):  # the seed fixes initialization without touching the caller's RNG
            torch.manual_seed(tc.seed)
            model = build(config.model)
    out = Path(config.out) if config.out else None
    state_path = out / ckpt.TRAINER if out is not None else None
    if resume and out is None:
        raise VaekitError("fit(..., resume=True) needs the run directory to resume: give out=")
    model.config = config
    model.to(device)
    opt = make_optimizer(model.parameters(), tc)
    noise = torch.Generator(device).manual_seed(tc.seed if world.size == 1 else _rank_seed(tc.seed, world.rank, 0))
    s = _fresh_state()
    if state_path is not None and state_path.exists():
        if not resume:
            raise VaekitError(f"{out}: already holds a run; resume it with --resume (fit(..., resume=True)) or choose another --out")
        _check_resumable(ckpt.read_config(out) if (out / ckpt.WEIGHTS).exists() else None, config, out)
        ckpt.load_weights(model, out / ckpt.WEIGHTS)
        s = ckpt.load_trainer_state(state_path)
        opt.load_state_dict(s.pop("optimizer"))
        noise_state, saved_world = s.pop("noise"), s.pop("world_size", 1)
        if world.size == 1 and saved_world == 1:
            noise.set_state(noise_state)
        else:  # rank 0's stream alone was saved: every rank starts a fresh one of its own
            noise.manual_seed(_rank_seed(tc.seed, world.rank, s["step"]))
        if s["stopped"] == "max_steps":
            s["stopped"] = None
    if world.main and out is not None:
        ckpt.write_text(out / ckpt.CONFIG, config.to_json())
        if config.data.name == str(out.resolve() / ckpt.DATA) and not (out / ckpt.DATA).exists():
            ckpt.save_splits(dataset, out / ckpt.DATA)
    train = _on_device(dataset.train, device)
    writer = _tensorboard(out) if tc.tensorboard and world.main and out is not None else None
    run = Run(out, config, model, s["history"], data=dataset)
    step_loss = distributed.wrap(model, world, device)
    if tc.compile:  # in place, so the state dict keeps its keys
        for net in _networks(model):
            net.compile()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    # DDP's gradient hooks, autocast and compiled graphs all live in autograd: those runs take the autograd step
    by_hand = tc.fused and world.size == 1 and tc.precision == "fp32" and not tc.compile
    fast = fused.step_for(model) if by_hand else None
    rows = None if world.size == 1 else (lambda n: distributed.shard(n, world))

    def save(buf: torch.Tensor):
        if out is None:
            return
        if s["batch"]:  # mid-epoch: the epoch's sums so far, over all ranks
            s["partial"] = distributed.sum_over_ranks(buf[: s["batch"]].clone(), world).cpu()
        if world.main:
            ckpt.save_weights(model, out / ckpt.WEIGHTS)
            ckpt.save_trainer_state({**s, "optimizer": opt.state_dict(), "noise": noise.get_state(), "world_size": world.size},
                                    state_path)
            ckpt.write_text(out / ckpt.METRICS, "".join(json.dumps(h) + "\n" for h in s["history"]))

    steps_per_epoch = train.n_batches(tc.batch_size)
    if tc.max_steps is not None and s["step"] >= tc.max_steps:
        s["stopped"] = "max_steps"
    model.train()
    while s["epoch"] < tc.epochs and s["stopped"] is None:
        epoch = s["epoch"]
        # per step: loss, recon and kl summed over this rank's rows, and the number of rows
        buf = torch.zeros(steps_per_epoch, 4, device=device)
        if world.main:  # the saved partial sums are over all ranks
            buf[: s["batch"]] = s["partial"].to(device)
        order = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch)
        bar = _bar(progress, steps_per_epoch, s["batch"], f"epoch {epoch + 1}/{tc.epochs}")
        t0 = time.perf_counter() - s["seconds"]
        for x, y in train.batches(tc.batch_size, order, start=s["batch"], noise=noise, device=device, rows=rows):
            n_global = min(tc.batch_size, len(train) - s["batch"] * tc.batch_size)
            n = len(x)
            if n == 0:  # a short last batch left this rank nothing: a zero-weight row keeps the collectives in step
                x, y = x.new_zeros((1, *x.shape[1:])), None if y is None else y.new_zeros((1, *y.shape[1:]))
            kl_weight, weight = kl_warmup(s["step"], tc.kl_warmup_steps), world.size * n / n_global
            if fast is not None:
                terms = fast(x, kl_weight, noise, weight)
            else:
                with autocast:
                    loss, terms = step_loss(x, y, kl_weight, noise, weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            buf[s["batch"], :3] = terms * n
            buf[s["batch"], 3] = n
            s["batch"] += 1
            s["step"] += 1
            if bar is not None:
                bar.update()
            at_ckpt = bool(tc.checkpoint_steps) and s["step"] % tc.checkpoint_steps == 0
            at_max = tc.max_steps is not None and s["step"] >= tc.max_steps
            if at_ckpt or at_max or s["batch"] % CHECK_EVERY == 0:
                _check_finite(buf, s, out, world)
                if bar is not None:
                    bar.set_postfix(loss=f"{(buf[s['batch'] - 1, 0] / buf[s['batch'] - 1, 3]).item():.2f}")
            if at_ckpt or at_max:
                s["seconds"] = time.perf_counter() - t0
                if at_max:
                    s["stopped"] = "max_steps"
                save(buf)
                if at_max:
                    break
        if bar is not None:
            bar.close()
        if s["stopped"] == "max_steps":
            break
        _check_finite(buf, s, out, world)
        seconds = time.perf_counter() - t0
        totals = distributed.sum_over_ranks(buf.sum(0), world)
        tr = (totals[:3] / totals[3]).tolist()
        val = mean_loss(model, dataset.val, device=device)  # every rank the same: it decides early stopping
        model.train()
        record = {"epoch": epoch + 1, "step": s["step"],
                  "train_loss": tr[0], "train_recon": tr[1], "train_kl": tr[2],
                  "val_loss": val["loss"], "val_recon": val["recon"], "val_kl": val["kl"],
                  "kl_weight": kl_warmup(s["step"], tc.kl_warmup_steps),
                  "seconds": seconds, "samples_per_s": len(train) / seconds}
        s["history"].append(record)
        if writer is not None:
            for k, v in record.items():
                if k not in ("epoch", "step"):
                    writer.add_scalar(k, v, epoch + 1)
        s.update(epoch=epoch + 1, batch=0, partial=torch.zeros(0, 4), seconds=0.0)
        if val["loss"] < s["best"]:
            s["best"], s["bad_epochs"] = val["loss"], 0
            if tc.early_stopping and world.main and out is not None:
                ckpt.save_weights(model, out / ckpt.BEST)
        else:
            s["bad_epochs"] += 1
            if tc.early_stopping and s["bad_epochs"] >= tc.early_stopping:
                s["stopped"] = "early_stopping"
        if s["epoch"] % tc.checkpoint_every == 0 or s["epoch"] == tc.epochs or s["stopped"]:
            save(buf)
    if writer is not None:
        writer.close()
    run.stopped = s["stopped"] or "completed"
    if run.stopped == "max_steps":
        return run
    distributed.barrier(world)  # rank 0's files are complete before any rank reads them
    if out is not None and tc.early_stopping and (out / ckpt.BEST).exists():
        ckpt.load_weights(model, out / ckpt.BEST)
        if world.main:
            ckpt.save_weights(model, out / ckpt.WEIGHTS)
    model.eval()
    if not world.main:
        return run
    run.test = mean_loss(model, dataset.test, device=device)
    if out is not None:
        ckpt.write_text(out / "summary.json", json.dumps({"stopped": run.stopped, "epochs": s["epoch"], "steps": s["step"],
                                                          **{f"test_{k}": v for k, v in run.test.items()}}, indent=2) + "\n")
    return run


def _fresh_state() -> dict[str, Any]:
    return {"step": 0, "epoch": 0, "batch": 0, "partial": torch.zeros(0, 4), "seconds": 0.0,
            "history": [], "best": math.inf, "bad_epochs": 0, "stopped": None}


def _check_resumable(stored: Config | None, config: Config, out: Path) -> None:
    if stored is None:
        raise VaekitError(f"{out}: the checkpoint has no {ckpt.WEIGHTS}; nothing to resume")
    a, b = stored.to_dict(), config.to_dict()
    for section in ("data", "model", "train"):
        for k, v in a[section].items():
            if b[section][k] != v and not (section == "train" and k in RESUMABLE):
                raise VaekitError(f"{out}: cannot resume with {section}.{k}={b[section][k]!r}; the run was made with {v!r}")


def _on_device(part, device: torch.device):
    """The training split on the accelerator when it takes at most half the free memory: batches are then cut
    and binarized there, with no host-to-device copy per step."""
    if device.type != "cuda" or not isinstance(part, MemoryPart):
        return part
    free, _ = torch.cuda.mem_get_info(device)
    size = part.x.numel() * part.x.element_size() + (0 if part.y is None else part.y.numel() * part.y.element_size())
    return part.to(device) if size <= free // 2 else part


def _networks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoder and decoder networks (and a hierarchical VAE's layer networks): what compiling pays for."""
    nets = []
    for m in model.children():
        nets.extend(m if isinstance(m, torch.nn.ModuleList) else [m])
    return nets


def _rank_seed(seed: int, rank: int, step: int) -> int:
    return hash((seed, rank, step)) % 2**63  # ints hash the same in every process


def _check_finite(buf: torch.Tensor, s: dict, out: Path, world: distributed.World) -> None:
    """Stop at the first step whose loss is not finite on any rank, every rank alike."""
    done = buf[: s["batch"], 0]
    bad = (~torch.isfinite(done)).nonzero()
    first = torch.tensor([int(bad[0]) if len(bad) else len(done)], device=buf.device)
    i = int(distributed.min_over_ranks(first, world))
    if i < len(done):
        step = s["step"] - s["batch"] + i + 1
        value = (done[i] / buf[i, 3]).item()
        what = "non-finite on another process" if math.isfinite(value) else value
        raise VaekitError(f"loss became {what} at step {step} (epoch {s['epoch'] + 1}); "
                          f"training stopped and the last good checkpoint in {out} is kept; try a lower train.lr "
                          "or set train.grad_clip")


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

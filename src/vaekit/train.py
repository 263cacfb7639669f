"""One trainer for every model: the AEVB minibatch loop with checkpoints that resume exactly.

The trainer owns the device and all randomness: parameters are initialized from
the seed, each epoch's order from (seed, epoch), and every other draw
(binarization, ε, corruption) from one generator whose state is checkpointed, so
an interrupted and resumed run ends bit-identical to an uninterrupted one on CPU.
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
from .config import Config
from .data import Dataset, MemoryPart, load_dataset
from .errors import VaekitError
from .evaluate import mean_loss
from .models import build
from .objectives import kl_warmup

# Keys of a run's config that may change when it is resumed; anything else would make it another run.
RESUMABLE = {"epochs", "max_steps", "early_stopping", "checkpoint_every", "checkpoint_steps", "device", "threads", "tensorboard"}
CHECK_EVERY = 100  # steps between checks that the loss is finite (a check syncs with the device)


@dataclass
class Run:
    """What ``fit`` returns: the trained model, its resolved config, and what was measured."""

    dir: Path
    config: Config
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, float] | None = None
    stopped: str = "completed"  # or "max_steps", "early_stopping"


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


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VaekitError(f"train.device: {name!r} is not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VaekitError(f"train.device: {name!r} asked for, but this machine has no CUDA device")
    return device


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    # fused: one kernel over all parameters; on 2 CPU cores Adam's step is 4× faster than the foreach default
    kinds = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
    return kinds[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def fit(config: Config, resume: bool = False, progress: bool = False) -> Run:
    """Train the model ``config`` describes and write its run directory at ``config.out``.

    With ``resume``, continue the run found there from its last checkpoint; only
    the keys in RESUMABLE may differ from the stored config.
    """
    tc = config.train
    device = choose_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    config, dataset = prepare(config, progress)
    out = Path(config.out)
    state_path = out / ckpt.TRAINER
    with torch.random.fork_rng(devices=[]):  # the seed fixes initialization without touching the caller's RNG
        torch.manual_seed(tc.seed)
        model = build(config.model)
    model.config = config
    model.to(device)
    opt = make_optimizer(model.parameters(), tc)
    noise = torch.Generator(device).manual_seed(tc.seed)
    s = _fresh_state()
    if state_path.exists():
        if not resume:
            raise VaekitError(f"{out}: already holds a run; resume it with --resume (fit(..., resume=True)) or choose another --out")
        _check_resumable(ckpt.read_config(out) if (out / ckpt.WEIGHTS).exists() else None, config, out)
        ckpt.load_weights(model, out / ckpt.WEIGHTS)
        s = ckpt.load_trainer_state(state_path)
        opt.load_state_dict(s.pop("optimizer"))
        noise.set_state(s.pop("noise"))
        if s["stopped"] == "max_steps":
            s["stopped"] = None
    ckpt.write_text(out / ckpt.CONFIG, config.to_json())
    train = dataset.train.to(device) if device.type == "cuda" and isinstance(dataset.train, MemoryPart) else dataset.train
    writer = _tensorboard(out) if tc.tensorboard else None
    run = Run(out, config, model, s["history"])

    def save():
        ckpt.save_weights(model, out / ckpt.WEIGHTS)
        ckpt.save_trainer_state({**s, "optimizer": opt.state_dict(), "noise": noise.get_state()}, state_path)
        ckpt.write_text(out / ckpt.METRICS, "".join(json.dumps(h) + "\n" for h in s["history"]))

    steps_per_epoch = train.n_batches(tc.batch_size)
    if tc.max_steps is not None and s["step"] >= tc.max_steps:
        s["stopped"] = "max_steps"
    model.train()
    while s["epoch"] < tc.epochs and s["stopped"] is None:
        epoch = s["epoch"]
        buf = torch.zeros(steps_per_epoch, 3, device=device)  # loss, recon, kl of each step of this epoch
        buf[: s["batch"]] = s["partial"].to(device)
        order = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch)
        bar = _bar(progress, steps_per_epoch, s["batch"], f"epoch {epoch + 1}/{tc.epochs}")
        t0 = time.perf_counter() - s["seconds"]
        for x, y in train.batches(tc.batch_size, order, start=s["batch"], noise=noise, device=device):
            out_ = model.loss(x, kl_weight=kl_warmup(s["step"], tc.kl_warmup_steps), generator=noise, y=y)
            opt.zero_grad(set_to_none=True)
            out_.loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            buf[s["batch"]] = torch.stack([out_.loss.detach(), out_.recon.detach(), out_.kl.detach()])
            s["batch"] += 1
            s["step"] += 1
            if bar is not None:
                bar.update()
            at_ckpt = bool(tc.checkpoint_steps) and s["step"] % tc.checkpoint_steps == 0
            at_max = tc.max_steps is not None and s["step"] >= tc.max_steps
            if at_ckpt or at_max or s["batch"] % CHECK_EVERY == 0:
                _check_finite(buf, s, steps_per_epoch, out)
                if bar is not None:
                    bar.set_postfix(loss=f"{buf[s['batch'] - 1, 0].item():.2f}")
            if at_ckpt or at_max:
                s["partial"], s["seconds"] = buf[: s["batch"]].cpu(), time.perf_counter() - t0
                if at_max:
                    s["stopped"] = "max_steps"
                save()
                if at_max:
                    break
        if bar is not None:
            bar.close()
        if s["stopped"] == "max_steps":
            break
        _check_finite(buf, s, steps_per_epoch, out)
        seconds = time.perf_counter() - t0
        weights = torch.full((steps_per_epoch,), float(tc.batch_size), device=device)
        weights[-1] = len(train) - tc.batch_size * (steps_per_epoch - 1)  # the last batch may be short
        tr = ((buf * weights[:, None]).sum(0) / len(train)).tolist()
        val = mean_loss(model, dataset.val, device=device)
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
        s.update(epoch=epoch + 1, batch=0, partial=torch.zeros(0, 3), seconds=0.0)
        if val["loss"] < s["best"]:
            s["best"], s["bad_epochs"] = val["loss"], 0
            if tc.early_stopping:
                ckpt.save_weights(model, out / ckpt.BEST)
        else:
            s["bad_epochs"] += 1
            if tc.early_stopping and s["bad_epochs"] >= tc.early_stopping:
                s["stopped"] = "early_stopping"
        if s["epoch"] % tc.checkpoint_every == 0 or s["epoch"] == tc.epochs or s["stopped"]:
            save()
    if writer is not None:
        writer.close()
    run.stopped = s["stopped"] or "completed"
    if run.stopped == "max_steps":
        return run
    if tc.early_stopping and (out / ckpt.BEST).exists():
        ckpt.load_weights(model, out / ckpt.BEST)
        ckpt.save_weights(model, out / ckpt.WEIGHTS)
    model.eval()
    run.test = mean_loss(model, dataset.test, device=device)
    ckpt.write_text(out / "summary.json", json.dumps({"stopped": run.stopped, "epochs": s["epoch"], "steps": s["step"],
                                                      **{f"test_{k}": v for k, v in run.test.items()}}, indent=2) + "\n")
    from .report import write_report

    write_report(out, model, dataset, tc.seed)
    return run


def _fresh_state() -> dict[str, Any]:
    return {"step": 0, "epoch": 0, "batch": 0, "partial": torch.zeros(0, 3), "seconds": 0.0,
            "history": [], "best": math.inf, "bad_epochs": 0, "stopped": None}


def _check_resumable(stored: Config | None, config: Config, out: Path) -> None:
    if stored is None:
        raise VaekitError(f"{out}: the checkpoint has no {ckpt.WEIGHTS}; nothing to resume")
    a, b = stored.to_dict(), config.to_dict()
    for section in ("data", "model", "train"):
        for k, v in a[section].items():
            if b[section][k] != v and not (section == "train" and k in RESUMABLE):
                raise VaekitError(f"{out}: cannot resume with {section}.{k}={b[section][k]!r}; the run was made with {v!r}")


def _check_finite(buf: torch.Tensor, s: dict, steps_per_epoch: int, out: Path) -> None:
    done = buf[: s["batch"]]
    bad = ~torch.isfinite(done[:, 0])
    if bad.any():
        i = int(bad.nonzero()[0])
        step = s["step"] - s["batch"] + i + 1
        raise VaekitError(f"loss became {done[i, 0].item()} at step {step} (epoch {s['epoch'] + 1}); training stopped "
                          f"and the last good checkpoint in {out} is kept; try a lower train.lr or set train.grad_clip")


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

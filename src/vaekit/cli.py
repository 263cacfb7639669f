"""The ``vaekit`` command: argparse subcommands over the library, nothing else.

Heavy imports (torch, the library) happen inside the commands so ``vaekit --help`` is instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# flag -> (config key, type); a flag given on the command line becomes a --set override
TRAIN_FLAGS = {
    "data": ("data.name", str, "built-in data set (digits, mnist, fashion-mnist, frey-face) or a .npy/.npz/.csv file or image folder"),
    "data_dir": ("data.data_dir", str, "where named data sets are kept (default $VAEKIT_DATA_DIR or ~/.cache/vaekit)"),
    "binarize": ("data.binarize", str, "auto, dynamic, static or none"),
    "model": ("model.kind", str, "vae, ae or dae"),
    "net": ("model.net", str, "mlp or conv"),
    "latent_dim": ("model.latent_dim", int, "size of z"),
    "hidden": ("model.hidden", lambda s: [int(v) for v in s.split(",")], "MLP hidden widths, e.g. 400 or 500,500"),
    "likelihood": ("model.likelihood", str, "auto, bernoulli, gaussian, gaussian-learned or categorical"),
    "beta": ("model.beta", float, "weight of the KL term"),
    "epochs": ("train.epochs", int, "passes over the training data"),
    "batch_size": ("train.batch_size", int, "minibatch size M"),
    "lr": ("train.lr", float, "learning rate"),
    "optimizer": ("train.optimizer", str, "adam, adagrad or sgd"),
    "seed": ("train.seed", int, "seed for initialization and all sampling"),
    "device": ("train.device", str, "auto, cpu, cuda or cuda:N"),
    "out": ("out", str, "run directory to write"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaekit", description="Autoencoders and variational autoencoders on PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model and write its run directory")
    p.add_argument("--config", help="a JSON or TOML config file (defaults otherwise)")
    for flag, (key, _, help_) in TRAIN_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"{help_} [{key}]")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="any config value, as JSON")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    args = parser.parse_args(argv)
    from .errors import VaekitError

    try:
        return args.func(args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130


def _train(args) -> int:
    from . import checkpoint
    from .config import Config, load_config
    from .errors import VaekitError
    from .train import fit

    sets = []
    for flag, (key, convert, _) in TRAIN_FLAGS.items():
        raw = getattr(args, flag)
        if raw is not None:
            try:
                value = convert(raw)
            except ValueError:
                raise VaekitError(f"--{flag.replace('_', '-')}: {raw!r} is not a valid {key}") from None
            sets.append(f"{key}={json.dumps(value)}")
    sets += args.set
    config = load_config(args.config) if args.config else Config()
    out = Path(args.out or config.out)
    if args.resume:
        if not (out / checkpoint.CONFIG).exists():
            raise VaekitError(f"{out}: no run to resume ({checkpoint.CONFIG} missing)")
        config = checkpoint.read_config(out) if (out / checkpoint.WEIGHTS).exists() else config
    run = fit(config.override(sets), resume=args.resume, progress=not args.no_progress)
    last = run.history[-1] if run.history else {}
    print(f"{run.stopped}: {len(run.history)} epochs, {last.get('step', 0)} steps in {run.dir}")
    if run.test:
        print(f"test loss {run.test['loss']:.2f} nats/example (reconstruction {run.test['recon']:.2f}, KL {run.test['kl']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

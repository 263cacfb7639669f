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
    e = sub.add_parser("eval", help="ELBO, importance-sampled log p(x), active units and baselines of a trained run")
    e.add_argument("run", help="run directory")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--k", type=int, default=5000, help="importance samples per example (Burda et al.: 5000)")
    e.add_argument("--k-naive", type=int, help="prior samples for the naive estimator (default: --k)")
    e.add_argument("--subset", type=int, help="evaluate the first N examples only, for a quick look")
    e.add_argument("--data", help="evaluate on other data of the same shape (a name or path)")
    e.add_argument("--data-dir", help="where named data sets are kept")
    e.add_argument("--seed", type=int, default=7919)
    e.add_argument("--device", default="auto")
    e.add_argument("--no-baselines", action="store_true", help="skip the PCA and linear-probe baselines")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_eval)
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


def _eval(args) -> int:
    from dataclasses import replace

    from . import checkpoint
    from .evaluate import evaluate
    from .train import choose_device, prepare

    device = choose_device(args.device)
    model = checkpoint.load(args.run, device)
    cfg = model.config
    data = replace(cfg.data, **{k: v for k, v in (("name", args.data), ("data_dir", args.data_dir)) if v is not None})
    if args.data is not None:
        data = replace(data, binarize="auto")
    _, dataset = prepare(replace(cfg, data=data), not args.no_progress)
    report = evaluate(model, dataset, split=args.split, k=args.k, k_naive=args.k_naive, subset=args.subset, seed=args.seed,
                      baselines=not args.no_baselines, progress=not args.no_progress, device=device)
    checkpoint.write_text(Path(args.run) / "eval.json", json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    return 0


def format_report(r: dict) -> str:
    """The evaluation as a small plain-text table."""
    lines = [f"{r['split']} split, {r['n']} examples, {r['dims']} dimensions; nats per example (± standard error)"]

    def row(name, key, bits=None):
        if key in r:
            se = r.get(key + "_se")
            lines.append(f"  {name:<34} {r[key]:>10.2f}" + (f" ± {se:.2f}" if se is not None else "") +
                         (f"   ({r[bits]:.4f} bits/dim)" if bits and bits in r else ""))

    row("ELBO", "elbo", "elbo_bits_per_dim")
    row("  reconstruction −E_q[log p(x|z)]", "recon")
    row("  KL(q(z|x) ‖ p(z))", "kl")
    row(f"log p(x), importance sampled K={r.get('k')}", "log_px", "log_px_bits_per_dim")
    row(f"log p(x), naive from prior K={r.get('k_naive')}", "log_px_naive")
    row("squared error per example", "squared_error")
    row("binary cross-entropy per example", "bce")
    if "active_units" in r:
        lines.append(f"  active units                       {r['active_units']:>10d} of {r['latent_dim']}")
    b = r.get("baselines")
    if b:
        lines.append(f"  MSE per pixel: model {r['mse_per_pixel']:.4f}, PCA at the same size {b['pca_mse_per_pixel']:.4f}")
        if "probe_accuracy_encoder" in b:
            lines.append(f"  linear probe accuracy: encoder means {b['probe_accuracy_encoder']:.3f}, PCA {b['probe_accuracy_pca']:.3f}")
    if "warning" in r:
        lines.append("warning: " + r["warning"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

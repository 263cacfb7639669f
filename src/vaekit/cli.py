"""The ``vaekit`` command: argparse subcommands over the library, nothing else.

Heavy imports (torch, the library) happen inside the commands so ``vaekit --help`` is instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .flags import TRAIN_FLAGS, VIEWS


def main(argv: list[str] | None = None) -> int:
    """The ``vaekit`` command: parse ``argv``, run one subcommand, return the exit status (2 for a VaekitError)."""
    parser = _Parser(prog="vaekit", description="Autoencoders and variational autoencoders on PyTorch.")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import this Python module first, so the parts it registers (vaekit.register) have names; "
                             "a run directory never causes an import")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model and write its run directory")
    p.add_argument("--config", help="a JSON or TOML config file (defaults otherwise)")
    p.add_argument("--preset", help="an architecture of the literature by name (see README); flags override it")
    for flag, (key, _, help_) in TRAIN_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"{help_} [{key}]")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="any config value, as JSON")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    e = _run_parser(sub, "eval", "ELBO, importance-sampled log p(x), active units and baselines of a trained run", _eval)
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--k", type=int, default=5000, help="importance samples per example (Burda et al.: 5000)")
    e.add_argument("--k-naive", type=int, help="prior samples for the naive estimator (default: --k)")
    e.add_argument("--subset", type=int, help="evaluate the first N examples only, for a quick look")
    e.add_argument("--data", help="a file of the same shape: every row of it is evaluated (or a data set's name: its test split)")
    e.add_argument("--data-dir", help="where named data sets are kept")
    e.add_argument("--seed", type=int, default=7919)
    e.add_argument("--no-baselines", action="store_true", help="skip the PCA and linear-probe baselines")
    e.add_argument("--no-progress", action="store_true")
    for name, (help_, options) in VIEWS.items():
        p = _run_parser(sub, name, help_, _view)
        _picture_options(p)
        for flag, kw in options.items():
            p.add_argument(flag, **kw)
    _picture_options(_run_parser(sub, "report", "draw every picture and write report.html", _report))
    p = _run_parser(sub, "features", "write posterior means of a data split as .npy (or .npz with labels)", _features)
    p.add_argument("--out", required=True, help="a .npy file (features) or .npz file (features and labels)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data", help="other data of the same shape (a file or a data set's name)")
    p.add_argument("--data-dir", help="where named data sets are kept")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("reproduce", help="rerun an experiment of Kingma & Welling (2013) or Burda et al.'s (2015) Table 1: "
                                         "figures, raw numbers, a summary")
    p.add_argument("experiment", choices=("grad-variance", "aevb-fig2", "aevb-fig3", "iwae-table1"))
    p.add_argument("--train-sizes", help="aevb-fig3: comma-separated training set sizes (default 1000,50000)")
    p.add_argument("--latent-sizes", help="aevb-fig2: comma-separated N_z (default the paper's for the data set)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--budget", type=int, default=600_000, help="training samples to evaluate")
    p.add_argument("--checkpoints", type=int, default=6)
    p.add_argument("--draws", type=int, default=50, help="draws of z per variance estimate")
    p.add_argument("--test-rows", type=int, help="aevb-fig3, iwae-table1: test images whose log p(x) is estimated "
                                                 "(default 100 for aevb-fig3, all for iwae-table1)")
    p.add_argument("--budget-minutes", type=float, default=10.0, help="iwae-table1: minutes of training per row")
    p.add_argument("--rows", help="iwae-table1: comma-separated rows (default vae-1,iwae5-1,iwae50-1,vae-2,iwae50-2)")
    p.add_argument("--k", type=int, default=5000, help="iwae-table1: importance samples of the test log p(x)")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="aevb-fig2, aevb-fig3: runs from seeds --seed, --seed + 1, ...; means shown")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reproduce)
    p = _run_parser(sub, "classify", "classifier from the encoder vs from scratch vs PCA + logistic regression, with few labels",
                    _classify)
    p.add_argument("--labels", type=int, default=100, help="labelled training examples")
    p.add_argument("--repeats", type=int, default=3, help="draws of the labelled examples to average over")
    p.add_argument("--steps", type=int, default=300, help="full-batch Adam steps for each network")
    p.add_argument("--seed", type=int, default=0)
    p = _run_parser(sub, "explore", "serve the interactive latent-space explorer on a local web page", _explore)
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else must be asked for here)")
    args = parser.parse_args(argv)
    from .registry import import_modules

    try:
        import_modules(args.imports)
        return args.func(args)
    except KeyboardInterrupt:
        kept = "; the last checkpoint is kept (continue with --resume)" if args.command == "train" else ""
        print(f"vaekit: interrupted{kept}", file=sys.stderr)
        return 130
    except Exception as e:
        message = _user_error(e)
        if message is None:
            raise  # a bug in vaekit: the traceback is what a report of it needs
        print(f"vaekit: error: {message}", file=sys.stderr)
        return 2


class _Parser(argparse.ArgumentParser):
    """argparse, its mistakes told in one line (with where to look) instead of the usage text and a line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _user_error(e: Exception) -> str | None:
    """The one line for an error that is the user's or the machine's, not vaekit's; None for any other."""
    from torch import OutOfMemoryError

    from .errors import VaekitError

    if isinstance(e, VaekitError):
        return str(e)
    if isinstance(e, OSError):  # a file or folder that cannot be read or written, wherever the library met it
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}"
    if isinstance(e, (MemoryError, OutOfMemoryError)) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e)):
        return "out of memory; choose a smaller model, batch size, --k or --n (" + (str(e).splitlines() or ["no details"])[0] + ")"
    return None


def _run_parser(sub, name: str, help_: str, func):
    """A subcommand over a run directory, with --device."""
    p = sub.add_parser(name, help=help_, description=help_)
    p.add_argument("run", help="run directory")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=func)
    return p


def _picture_options(p) -> None:
    p.add_argument("--out", help="folder for the picture (default: the run directory)")
    p.add_argument("--seed", type=int, default=0)


def _train(args) -> int:
    from .presets import preset
    from .distributed import world_from_env
    from .errors import VaekitError
    from .report import write_report
    from .runs import train_config
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
    config = train_config(args.config, sets + args.set, args.out, args.resume, preset(args.preset) if args.preset else [])
    run = fit(config, resume=args.resume, progress=not args.no_progress)
    if not world_from_env().main:  # under torchrun rank 0 speaks for all
        return 0
    if run.stopped != "max_steps":
        write_report(run.dir, run.model, run.data, run.config.train.seed)
    last = run.history[-1] if run.history else {}
    print(f"{run.stopped}: {len(run.history)} epochs, {last.get('step', 0)} steps in {run.dir}")
    if run.test:
        print(f"test loss {run.test['loss']:.2f} nats/example (reconstruction {run.test['recon']:.2f}, KL {run.test['kl']:.2f})")
    return 0


def _eval(args) -> int:
    from .evaluation import evaluate
    from .files import write_text
    from .report import format_evaluation
    from .runs import open_run

    model, dataset = open_run(args.run, args.device, args.data, args.data_dir, not args.no_progress, args.split)
    report = evaluate(model, dataset, split=args.split, k=args.k, k_naive=args.k_naive, subset=args.subset, seed=args.seed,
                      baselines=not args.no_baselines, progress=not args.no_progress)
    write_text(Path(args.run) / "eval.json", json.dumps(report, indent=2) + "\n")
    print(format_evaluation(report))
    return 0


def _opened(args):
    """(model, dataset, output folder) for a command that draws."""
    from .runs import open_run

    model, dataset = open_run(args.run, args.device)
    (out := Path(args.out or args.run)).mkdir(parents=True, exist_ok=True)
    return model, dataset, out


def _view(args) -> int:
    from .views import VIEWS as functions

    model, dataset, out = _opened(args)
    own = {"command", "func", "run", "device", "imports", "out"}
    info = functions[args.command](model, dataset, out, **{k: v for k, v in vars(args).items() if k not in own and v is not None})
    if "message" in info:
        print(info.pop("message"))
    print(f"wrote {info.pop('path')}" + "".join(f"; {k} {v:.4f}" if isinstance(v, float) else "" for k, v in info.items()))
    return 0


def _report(args) -> int:
    from .report import write_report

    model, dataset, out = _opened(args)
    print(f"wrote {write_report(args.run, model, dataset, args.seed, out)}")
    return 0


def _explore(args) -> int:
    from .runs import open_run
    from .server import Explorer, make_server

    model, dataset = open_run(args.run, args.device)
    server = make_server(Explorer(model, dataset), args.host or "127.0.0.1", args.port, allow_remote=args.host is not None)
    host, port = server.server_address[:2]
    print(f"vaekit explorer for {args.run} at http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _features(args) -> int:
    from .classify import write_features
    from .data.parts import materialize
    from .runs import open_run

    model, dataset = open_run(args.run, args.device, args.data, args.data_dir, split=args.split)
    x, y = materialize(getattr(dataset, args.split), None, model.device, args.seed)
    n, k = write_features(model, x, y, args.out)
    print(f"wrote {args.out}: {n} × {k} posterior means of the {args.split} split")
    return 0


def _classify(args) -> int:
    from .classify import compare_classifiers
    from .data.parts import materialize
    from .errors import VaekitError
    from .runs import open_run

    model, dataset = open_run(args.run, args.device)
    (x, y), (xt, yt) = (materialize(part, None, model.device, args.seed) for part in (dataset.train, dataset.test))
    if y is None or yt is None:
        raise VaekitError(f"data {dataset.name!r} has no labels to classify")
    r = compare_classifiers(model, x, y, xt, yt, args.labels, args.repeats, args.steps, seed=args.seed)
    print(f"test accuracy with {r['labels']} labelled examples (mean of {r['repeats']} draws), latent size {r['latent_dim']}:")
    for name, acc in r["accuracy"].items():
        print(f"  {name:<28} {acc:.3f}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import run

    out = run(args.experiment, Path(args.out) / args.experiment, dataset=args.dataset, budget=args.budget, checkpoints=args.checkpoints,
              draws=args.draws, data_dir=args.data_dir, seed=args.seed, seeds=args.seeds, test_rows=args.test_rows,
              train_sizes=args.train_sizes, latent_sizes=args.latent_sizes, progress=not args.no_progress,
              budget_minutes=args.budget_minutes, rows=args.rows, k=args.k)
    print((out / "summary.md").read_text())
    print(f"wrote {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if p.is_file())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

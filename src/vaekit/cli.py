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
    "val_data": ("data.val", str, "a file of validation rows (default: held out of --data)"),
    "test_data": ("data.test", str, "a file of test rows (default: the data set's own, or held out of --data)"),
    "data_dir": ("data.data_dir", str, "where named data sets are kept (default $VAEKIT_DATA_DIR or ~/.cache/vaekit)"),
    "binarize": ("data.binarize", str, "auto, dynamic, static or none"),
    "model": ("model.kind", str, "vae, ae, dae, hvae (stochastic layers) or cvae (conditioned on labels)"),
    "net": ("model.net", str, "mlp or conv"),
    "latent_dim": ("model.latent_dim", int, "size of z"),
    "hidden": ("model.hidden", lambda s: [int(v) for v in s.split(",")], "MLP hidden widths, e.g. 400 or 500,500"),
    "likelihood": ("model.likelihood", str, "auto, bernoulli, gaussian, gaussian-learned or categorical"),
    "beta": ("model.beta", float, "weight of the KL term"),
    "objective": ("model.objective", str, "elbo, or iwae: the K-sample importance weighted bound"),
    "k": ("model.iwae_k", int, "K, importance samples of the iwae objective"),
    "estimator": ("model.estimator", str, "encoder gradient: reparameterization, score-function or score-function-baseline"),
    "epochs": ("train.epochs", int, "passes over the training data"),
    "batch_size": ("train.batch_size", int, "minibatch size M"),
    "lr": ("train.lr", float, "learning rate"),
    "optimizer": ("train.optimizer", str, "adam, adagrad or sgd"),
    "seed": ("train.seed", int, "seed for initialization and all sampling"),
    "device": ("train.device", str, "auto, cpu, cuda or cuda:N"),
    "precision": ("train.precision", str, "fp32, or bf16: the networks under bfloat16 autocast"),
    "threads": ("train.threads", int, "CPU threads (torch.set_num_threads)"),
    "out": ("out", str, "run directory to write"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaekit", description="Autoencoders and variational autoencoders on PyTorch.")
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
    _explore_parsers(sub)
    args = parser.parse_args(argv)
    from .errors import VaekitError

    try:
        _import(args.imports)
        return args.func(args)
    except VaekitError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130


def _import(modules: list[str]) -> None:
    import importlib

    from .errors import VaekitError

    if modules and "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as python -m does: a module beside the user is found
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise VaekitError(f"--import {name}: cannot import it ({e})") from None


def _train(args) -> int:
    from . import checkpoint
    from .config import Config, load_config, preset
    from .distributed import world_from_env
    from .errors import VaekitError
    from .train import fit

    sets = preset(args.preset) if args.preset else []
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
    if not world_from_env().main:  # under torchrun rank 0 speaks for all
        return 0
    if run.stopped != "max_steps":
        from .report import write_report

        write_report(run.dir, run.model, run.data, run.config.train.seed)
    last = run.history[-1] if run.history else {}
    print(f"{run.stopped}: {len(run.history)} epochs, {last.get('step', 0)} steps in {run.dir}")
    if run.test:
        print(f"test loss {run.test['loss']:.2f} nats/example (reconstruction {run.test['recon']:.2f}, KL {run.test['kl']:.2f})")
    return 0


def _eval(args) -> int:
    from . import checkpoint
    from .evaluation import evaluate
    from .report import format_evaluation
    from .runs import open_run

    model, dataset = open_run(args.run, args.device, args.data, args.data_dir, not args.no_progress)
    report = evaluate(model, dataset, split=args.split, k=args.k, k_naive=args.k_naive, subset=args.subset, seed=args.seed,
                      baselines=not args.no_baselines, progress=not args.no_progress)
    checkpoint.write_text(Path(args.run) / "eval.json", json.dumps(report, indent=2) + "\n")
    print(format_evaluation(report))
    return 0


def _explore_parsers(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("run", help="run directory")
    common.add_argument("--out", help="folder for the picture (default: the run directory)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--device", default="auto")

    def add(name, help_, func):
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("sample", "a grid of decoded prior samples", _sample)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0, help="z ~ N(0, T² I)")
    p.add_argument("--label", type=int, action="append", help="conditional VAE: the class to generate (repeatable; default all)")
    p = add("style", "conditional VAE: test images, each decoded under every label in its own style", _style)
    p.add_argument("--n", type=int, default=8)
    p = add("reconstruct", "test images above their reconstructions", _reconstruct)
    p.add_argument("--n", type=int, default=8)
    p = add("denoise", "corrupted, denoised and clean test images", _denoise)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--corruption", choices=("gaussian", "mask", "salt-pepper"), help="default: the DAE's own, else mask")
    p.add_argument("--noise", type=float, help="corruption level (default: the DAE's own, else 0.25)")
    p = add("impute", "fill in missing pixels of test images; error against mean imputation", _impute)
    p.add_argument("--mask", default="bottom", help="left, right, top, bottom, random, or a .npy/.png file (nonzero = missing)")
    p.add_argument("--fraction", type=float, default=0.5, help="share of pixels missing for --mask random")
    p.add_argument("--method", default="pseudo-gibbs", choices=("pseudo-gibbs", "metropolis"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--n", type=int, default=500, help="test images to measure the error on (the picture shows 8)")
    p = add("interpolate", "decode the way between two test images' codes, linear and spherical", _interpolate)
    p.add_argument("--label", type=int, help="conditional VAE: decode under this label (default: the first image's)")
    p.add_argument("--pair", type=int, nargs=2, action="append", metavar=("I", "J"), help="test indices (repeatable)")
    p.add_argument("--files", nargs=2, metavar=("A", "B"), help="two image files instead")
    p.add_argument("--steps", type=int, default=10)
    p = add("traverse", "sweep each latent unit around an input's code", _traverse)
    p.add_argument("--label", type=int, help="conditional VAE: decode under this label (default: the image's own)")
    p.add_argument("--index", type=int, default=0, help="test image whose code the sweep starts from")
    p.add_argument("--units", help="comma-separated units (default: the --top most active)")
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--span", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=9)
    p = add("manifold", "decode an inverse-CDF grid over two latent units (Kingma & Welling, Figure 4)", _manifold)
    p.add_argument("--label", type=int, help="conditional VAE: the label to decode under (required for one)")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--units", help="two units, e.g. 0,1 (default: 0,1 for a 2-D code, else the two most active)")
    p = add("embed", "scatter of posterior means coloured by label", _embed)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--method", default="pca", choices=("pca", "tsne"))
    p.add_argument("--compare", help="a second run (e.g. an autoencoder) drawn beside this one")
    add("report", "draw every picture and write report.html", _report)
    p = sub.add_parser("features", help="write posterior means of a data split as .npy (or .npz with labels)")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="a .npy file (features) or .npz file (features and labels)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data", help="other data of the same shape (a name or path)")
    p.add_argument("--data-dir", help="where named data sets are kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_features)
    p = sub.add_parser("reproduce", help="rerun an experiment of Kingma & Welling (2013): figures, raw numbers, a summary")
    p.add_argument("experiment", choices=("grad-variance", "aevb-fig2", "aevb-fig3"))
    p.add_argument("--train-sizes", help="aevb-fig3: comma-separated training set sizes (default 1000,50000)")
    p.add_argument("--latent-sizes", help="aevb-fig2: comma-separated N_z (default the paper's for the data set)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--budget", type=int, default=600_000, help="training samples to evaluate")
    p.add_argument("--checkpoints", type=int, default=6)
    p.add_argument("--draws", type=int, default=50, help="draws of z per variance estimate")
    p.add_argument("--test-rows", type=int, default=100, help="aevb-fig3: test images whose log p(x) is estimated")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="aevb-fig2, aevb-fig3: runs from seeds --seed, --seed + 1, ...; means shown")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reproduce)
    p = sub.add_parser("classify", help="classifier from the encoder vs from scratch vs PCA + logistic regression, with few labels")
    p.add_argument("run", help="run directory")
    p.add_argument("--labels", type=int, default=100, help="labelled training examples")
    p.add_argument("--repeats", type=int, default=3, help="draws of the labelled examples to average over")
    p.add_argument("--steps", type=int, default=300, help="full-batch Adam steps for each network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_classify)
    p = sub.add_parser("explore", help="serve the interactive latent-space explorer on a local web page")
    p.add_argument("run", help="run directory")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else must be asked for here)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_explore)


def _open(args):
    """(model, dataset, output folder) for an explore command."""
    from .runs import open_run

    model, dataset = open_run(args.run, args.device)
    out = Path(args.out or args.run)
    out.mkdir(parents=True, exist_ok=True)
    return model, dataset, out


def _images(model, dataset, n, seed):
    from .errors import VaekitError
    from .data.parts import materialize

    if dataset.kind != "image":
        raise VaekitError(f"data {dataset.name!r} is not images; this command draws pictures of images")
    return materialize(dataset.test, n, model.device, seed)


def _if_conditional(model, y):
    """The labels, for a model that encodes with them; None for any other."""
    return y if model.conditional else None


def _wrote(info: dict) -> int:
    print(f"wrote {info.pop('path')}" + "".join(f"; {k} {v:.4f}" if isinstance(v, float) else "" for k, v in info.items()))
    return 0


def _sample(args) -> int:
    from .errors import VaekitError
    from .report import draw_conditional_samples, draw_samples

    model, _, out = _open(args)
    if model.conditional:
        per_label = args.n if args.label else max(1, args.n // model.n_classes)
        return _wrote(draw_conditional_samples(model, out / "samples.png", per_label, args.temperature, args.seed, args.label))
    if args.label:
        raise VaekitError("--label: this run's model is not conditional (train with --model cvae)")
    return _wrote(draw_samples(model, out / "samples.png", args.n, args.temperature, args.seed))


def _style(args) -> int:
    from .errors import VaekitError
    from .report import draw_style_transfer

    model, dataset, out = _open(args)
    if not model.conditional:
        raise VaekitError("style transfer needs a conditional VAE (train with --model cvae)")
    x, y = _images(model, dataset, args.n, args.seed)
    return _wrote(draw_style_transfer(model, x, y, out / "style.png"))


def _reconstruct(args) -> int:
    from .report import draw_reconstructions

    model, dataset, out = _open(args)
    x, y = _images(model, dataset, args.n, args.seed)
    return _wrote(draw_reconstructions(model, x, out / "reconstructions.png", y))


def _denoise(args) -> int:
    from .report import draw_denoise

    model, dataset, out = _open(args)
    x, y = _images(model, dataset, args.n, args.seed)
    return _wrote(draw_denoise(model, x, out / "denoise.png", args.corruption, args.noise, args.seed, _if_conditional(model, y)))


def _impute(args) -> int:
    import torch

    from .data.parts import materialize
    from .explore import MASKS, make_mask
    from .report import draw_impute

    model, dataset, out = _open(args)
    x, y = _images(model, dataset, args.n, args.seed)
    shape = tuple(x.shape[1:])
    if args.mask in MASKS:
        missing = make_mask(args.mask, shape, len(x), args.fraction, torch.Generator().manual_seed(args.seed))
        name = args.mask
    else:
        missing, name = _mask_file(Path(args.mask), shape), Path(args.mask).stem
    train_x, _ = materialize(dataset.train, 10000, model.device, args.seed)
    info = draw_impute(model, x, missing, out / f"impute-{name}.png", train_x.mean(0), args.steps, args.method, args.seed,
                       y=_if_conditional(model, y))
    print(f"imputation MSE over missing pixels: model {info['mse_model']:.4f}, mean imputation {info['mse_mean_imputation']:.4f}"
          + (f"; acceptance rate {info['acceptance_rate']:.2f}" if info["acceptance_rate"] is not None else ""))
    print(f"wrote {info['path']}")
    return 0


def _mask_file(path: Path, shape: tuple[int, ...]):
    import numpy as np
    import torch

    from .data.readers import read_image
    from .errors import VaekitError

    if not path.exists():
        raise VaekitError(f"--mask {path}: no such file, and not one of left, right, top, bottom, random")
    a = np.load(path) if path.suffix == ".npy" else read_image(path)
    m = torch.from_numpy(np.asarray(a)) != 0
    if m.shape not in (shape, shape[-2:]):
        raise VaekitError(f"--mask {path}: shape {tuple(m.shape)}, expected {shape[-2:]} or {shape}")
    return m.expand(shape)


def _interpolate(args) -> int:
    import numpy as np
    import torch

    from .data.readers import read_image
    from .errors import VaekitError
    from .report import draw_interpolations

    model, dataset, out = _open(args)
    shape = model.input_shape
    labels = None
    if args.files:
        if model.conditional:
            raise VaekitError("--files: a conditional VAE needs the labels of its inputs; interpolate between test images (--pair)")
        device = model.device
        a, b = (torch.from_numpy(np.asarray(read_image(Path(f), shape[-2:], shape[0]), dtype=np.float32) / 255).reshape(shape).to(device)
                for f in args.files)
        pairs = [(a, b)]
    else:
        wanted = args.pair or [[0, 1], [2, 3], [4, 5]]
        x, y = _images(model, dataset, max(max(p) for p in wanted) + 1, args.seed)
        bad = [i for p in wanted for i in p if not 0 <= i < len(x)]
        if bad:
            raise VaekitError(f"--pair: test index {bad[0]} is out of range (the test split has {len(x)} images)")
        pairs = [(x[i], x[j]) for i, j in wanted]
        if model.conditional:
            labels = [(y[[i, j]], int(y[i]) if args.label is None else args.label) for i, j in wanted]
    return _wrote(draw_interpolations(model, pairs, out / "interpolations.png", args.steps, labels))


def _units(text: str | None, flag: str) -> list[int] | None:
    from .errors import VaekitError

    if text is None:
        return None
    try:
        return [int(u) for u in text.split(",")]
    except ValueError:
        raise VaekitError(f"{flag} {text!r}: expected comma-separated unit numbers such as 0,1") from None


def _traverse(args) -> int:
    from .explore import most_active_units
    from .report import draw_traverse

    model, dataset, out = _open(args)
    x, y = _images(model, dataset, max(500, args.index + 1), args.seed)
    y = _if_conditional(model, y)
    units = _units(args.units, "--units") or most_active_units(model, x, args.top, y)
    label = None if y is None else (int(y[args.index]) if args.label is None else args.label)
    return _wrote(draw_traverse(model, x[args.index], out / "traverse.png", units, args.span, args.steps,
                                None if y is None else y[args.index], label))


def _manifold(args) -> int:
    from .errors import VaekitError
    from .explore import most_active_units
    from .report import draw_manifold

    model, dataset, out = _open(args)
    if model.conditional and args.label is None:
        raise VaekitError("a conditional VAE's manifold is drawn under one label: give --label")
    units = _units(args.units, "--units")
    if units is None:
        x, y = _images(model, dataset, 500, args.seed)
        units = [0, 1] if model.prior is not None and model.latent_dim == 2 else \
            most_active_units(model, x, 2, _if_conditional(model, y))
    if len(units) != 2:
        raise VaekitError(f"--units {args.units!r}: the manifold needs exactly two units")
    return _wrote(draw_manifold(model, out / "manifold.png", args.n, tuple(units), args.label))


def _embed(args) -> int:
    from . import checkpoint
    from .data.parts import materialize
    from .report import draw_embed

    model, dataset, out = _open(args)
    x, y = materialize(dataset.test, args.n, model.device, args.seed)
    compare = checkpoint.load(args.compare, model.device) if args.compare else None
    return _wrote(draw_embed(model, x, y, out / "embedding.png", args.method, compare, dataset.classes, args.seed))


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
    import numpy as np

    from . import checkpoint
    from .classify import features
    from .data.parts import materialize
    from .errors import VaekitError
    from .runs import open_run

    out = Path(args.out)
    if out.suffix not in (".npy", ".npz"):
        raise VaekitError(f"--out {out}: expected a .npy or .npz file name")
    model, dataset = open_run(args.run, args.device, args.data, args.data_dir)
    x, y = materialize(getattr(dataset, args.split), None, model.device, args.seed)
    f = features(model, x).cpu().numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"features": f, **({"labels": y.cpu().numpy()} if y is not None else {})}

    def write(tmp):  # through a file object: given a name, numpy would add its own suffix to the temporary one
        with open(tmp, "wb") as fh:
            if out.suffix == ".npz":
                np.savez(fh, **arrays)
            else:
                np.save(fh, f)

    checkpoint.write_atomic(out, write)
    print(f"wrote {out}: {f.shape[0]} × {f.shape[1]} posterior means of the {args.split} split")
    return 0


def _classify(args) -> int:
    from .classify import compare_classifiers
    from .data.parts import materialize
    from .errors import VaekitError
    from .runs import open_run

    model, dataset = open_run(args.run, args.device)
    device = model.device
    x, y = materialize(dataset.train, None, device, args.seed)
    xt, yt = materialize(dataset.test, None, device, args.seed)
    if y is None or yt is None:
        raise VaekitError(f"data {dataset.name!r} has no labels to classify")
    r = compare_classifiers(model, x, y, xt, yt, args.labels, args.repeats, args.steps, seed=args.seed)
    print(f"test accuracy with {r['labels']} labelled examples (mean of {r['repeats']} draws), latent size {r['latent_dim']}:")
    for name, acc in r["accuracy"].items():
        print(f"  {name:<28} {acc:.3f}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import aevb_fig2, aevb_fig3, grad_variance

    out = Path(args.out) / args.experiment
    if args.experiment == "grad-variance":
        grad_variance(out, args.dataset, args.budget, args.checkpoints, args.draws, args.data_dir, args.seed, not args.no_progress)
    elif args.experiment == "aevb-fig3":
        sizes = _units(args.train_sizes, "--train-sizes")
        aevb_fig3(out, args.dataset, args.budget, tuple(sizes) if sizes else (1000, 50000), args.checkpoints, args.data_dir, args.seed,
                  args.test_rows, args.seeds)
    else:
        sizes = _units(args.latent_sizes, "--latent-sizes")
        aevb_fig2(out, args.dataset, args.budget, tuple(sizes) if sizes else None, args.checkpoints, args.data_dir, args.seed,
                  progress=not args.no_progress, seeds=args.seeds)
    print((out / "summary.md").read_text())
    print(f"wrote {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if p.is_file())))
    return 0


def _report(args) -> int:
    from .report import write_report

    model, dataset, out = _open(args)
    print(f"wrote {write_report(args.run, model, dataset, args.seed, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The command line's flags: which config key each training flag sets, and the options of each explore command.

Data, not code, so ``vaekit --help`` stays instant and the tables can be read in one place.
"""
from __future__ import annotations

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
    "prior": ("model.prior", str, "p(z): standard-normal, mog (learned mixture) or vamp (VampPrior; model.prior_components)"),
    "posterior": ("model.posterior", str, "q(z|x): gaussian, or the flows planar and iaf (model.flow_steps)"),
    "beta": ("model.beta", float, "weight of the KL term"),
    "objective": ("model.objective", str, "elbo, or iwae: the K-sample importance weighted bound"),
    "k": ("model.iwae_k", int, "K, importance samples of the iwae objective"),
    "estimator": ("model.estimator", str, "encoder gradient: reparameterization, score-function, score-function-baseline, or dreg (iwae)"),
    "epochs": ("train.epochs", int, "passes over the training data"),
    "batch_size": ("train.batch_size", int, "minibatch size M"),
    "lr": ("train.lr", float, "learning rate"),
    "optimizer": ("train.optimizer", str, "adam, adagrad or sgd"),
    "schedule": ("train.schedule", str, "learning rate per step: constant, step, exponential, cosine or burda (Burda et al.'s)"),
    "warmup_steps": ("train.warmup_steps", int, "a linear warm-up of the learning rate over this many steps"),
    "time_budget": ("train.time_budget", str, "train for this wall-clock time (600, 10m, 1.5h); the schedule spans it"),
    "seed": ("train.seed", int, "seed for initialization and all sampling"),
    "device": ("train.device", str, "auto, cpu, cuda or cuda:N"),
    "precision": ("train.precision", str, "fp32, or bf16: the networks under bfloat16 autocast"),
    "threads": ("train.threads", int, "CPU threads (torch.set_num_threads)"),
    "out": ("out", str, "run directory to write"),
}


# The explore commands: (help, {flag: argparse keywords}); each calls the function of the same name in vaekit.views,
# whose defaults are the command's defaults.
VIEWS = {
    "sample": ("a grid of decoded prior samples", {
        "--n": dict(type=int), "--temperature": dict(type=float, help="z ~ N(0, T² I)"),
        "--label": dict(type=int, action="append", help="conditional VAE: the class to generate (repeatable; default all)")}),
    "style": ("conditional VAE: test images, each decoded under every label in its own style", {"--n": dict(type=int)}),
    "reconstruct": ("test images above their reconstructions", {"--n": dict(type=int)}),
    "denoise": ("corrupted, denoised and clean test images", {
        "--n": dict(type=int), "--corruption": dict(choices=("gaussian", "mask", "salt-pepper"), help="default: the DAE's own, else mask"),
        "--noise": dict(type=float, help="corruption level (default: the DAE's own, else 0.25)")}),
    "impute": ("fill in missing pixels of test images; error against mean imputation", {
        "--mask": dict(help="left, right, top, bottom, random, or a .npy/.png file (nonzero = missing); default bottom"),
        "--fraction": dict(type=float, help="share of pixels missing for --mask random"),
        "--method": dict(choices=("pseudo-gibbs", "metropolis")), "--steps": dict(type=int),
        "--n": dict(type=int, help="test images to measure the error on (the picture shows 8)")}),
    "interpolate": ("decode the way between two test images' codes, linear and spherical", {
        "--label": dict(type=int, help="conditional VAE: decode under this label (default: the first image's)"),
        "--pair": dict(type=int, nargs=2, action="append", metavar=("I", "J"), help="test indices (repeatable)"),
        "--files": dict(nargs=2, metavar=("A", "B"), help="two image files instead"), "--steps": dict(type=int)}),
    "traverse": ("sweep each latent unit around an input's code", {
        "--label": dict(type=int, help="conditional VAE: decode under this label (default: the image's own)"),
        "--index": dict(type=int, help="test image whose code the sweep starts from"),
        "--units": dict(help="comma-separated units (default: the --top most active)"), "--top": dict(type=int),
        "--span": dict(type=float), "--steps": dict(type=int)}),
    "manifold": ("decode an inverse-CDF grid over two latent units (Kingma & Welling, Figure 4)", {
        "--label": dict(type=int, help="conditional VAE: the label to decode under (required for one)"), "--n": dict(type=int),
        "--units": dict(help="two units, e.g. 0,1 (default: 0,1 for a 2-D code, else the two most active)")}),
    "embed": ("scatter of posterior means coloured by label", {
        "--n": dict(type=int), "--method": dict(choices=("pca", "tsne")),
        "--compare": dict(help="a second run (e.g. an autoencoder) drawn beside this one")}),
}

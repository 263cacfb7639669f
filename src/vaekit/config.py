"""Configuration as typed, frozen dataclasses with runnable defaults.

A config round-trips through JSON (and reads TOML); unknown keys and wrong
types are one-line errors that name the key. ``resolve`` fills the fields left
as "auto" once the data is known, and the resolved config is what a run writes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from . import registry
from .errors import VaekitError
from .files import read_json, read_text


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # a built-in data set, or a path to .npy/.npz/.csv/an image folder (a .npz of train/valid/test: pre-split)
    val: str | None = None  # a file of validation rows: used whole, nothing held out of the training rows
    test: str | None = None  # a file of test rows: used whole, replacing any test split of the data set
    data_dir: str | None = None  # where named data sets live; default $VAEKIT_DATA_DIR or the user cache
    download: bool = True  # fetch a missing named data set (checksums verified)
    binarize: Literal["auto", "dynamic", "static", "none"] = "auto"  # auto: dynamic under a Bernoulli likelihood
    val_size: float = 0.1  # below 1: a fraction of the training pool; 1 or more: a count (MNIST 10000 gives 50k/10k/10k)
    test_size: float = 0.1  # held out when a data set has no test split of its own
    stream: bool = False  # read a .npy file in chunks from disk instead of loading it (flat memory)
    label_column: str | None = None  # CSV: the column holding labels, kept out of x
    condition_columns: tuple[str, ...] = ()  # CSV: columns kept out of x as attribute vectors a conditional VAE is given

    def __post_init__(self):
        _validate_fields(self, "data")
        _check(self, "data", val_size=">0", test_size=">0")
        if self.label_column is not None and self.condition_columns:
            raise VaekitError("data.label_column and data.condition_columns: give labels or attribute columns, not both")


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "vae"  # vae, ae, dae, hvae (stochastic_layers below z), cvae (conditioned on labels), or a registered model
    net: str = "mlp"  # mlp, conv, or a registered net; "custom": modules a user built (load with vaekit.load(dir, model=...))
    hidden: tuple[int, ...] = (400,)  # MLP hidden widths, mirrored in the decoder
    channels: tuple[int, ...] = (32, 64)  # conv channels, each layer halving H and W
    activation: Literal["relu", "tanh", "softplus"] = "relu"
    latent_dim: int = 20
    stochastic_layers: tuple[int, ...] = ()  # hvae: sizes of the stochastic layers below z, from x up (Burda et al.: [100])
    upper_hidden: tuple[int, ...] = (100, 100)  # hvae: deterministic widths between two stochastic layers
    likelihood: str = "auto"  # auto (from the data), bernoulli, gaussian, gaussian-learned, categorical, or a registered one
    prior: str = "standard-normal"  # p(z): standard-normal, mog (a learned mixture), vamp (the VampPrior) or a registered prior
    prior_components: int | None = None  # mog, vamp: components of the mixture (None: 10 for mog, 500 for vamp as in the paper)
    posterior: str = "gaussian"  # q(z|x): gaussian (diagonal), planar or iaf (normalizing flows on it), or a registered one
    flow_steps: int = 4  # planar, iaf: steps of the flow
    sigma: float = 1.0  # the fixed σ of the "gaussian" likelihood (at least 1e-6: below, 1/σ² overflows float32 losses)
    gaussian_mean: Literal["linear", "sigmoid"] = "linear"  # sigmoid: the Gaussian decoders' mean kept in (0, 1)
    beta: float = 1.0  # weight of the KL term (β-VAE)
    mc_samples: int = 1  # L, Monte Carlo samples of z per data point
    objective: str = "auto"  # auto (the model's own: elbo, or reconstruction for ae/dae), elbo, iwae, or a registered one
    iwae_k: int = 50  # K of the iwae objective; K = 1 is the ELBO with the sampled KL
    kl_estimator: Literal["analytic", "sampled"] = "analytic"  # the ELBO's KL in closed form, or log q(z|x) − log p(z)
    estimator: Literal["reparameterization", "score-function", "score-function-baseline", "dreg"] = "reparameterization"  # encoder gradient; dreg: iwae's doubly reparameterized one
    corruption: Literal["gaussian", "mask", "salt-pepper"] = "gaussian"  # denoising AE only
    noise: float = 0.3  # DAE corruption level: σ of the Gaussian, or the fraction of pixels hit
    init_std: float | None = None  # weights from N(0, init_std²) as in the AEVB paper; None: PyTorch's default
    init_output_bias: bool = False  # the decoder's output bias from the training data's mean (Burda et al.'s code)
    input_shape: tuple[int, ...] | None = None  # filled in from the data: (C, H, W) images, (D,) tables
    n_classes: int | None = None  # cvae: filled in from the data: the number of classes, or of condition columns

    def __post_init__(self):
        _validate_fields(self, "model")
        _check(self, "model", latent_dim=">=1", stochastic_layers=">=1", upper_hidden=">=1", hidden=">=1", channels=">=1", sigma=">=1e-6", beta=">=0",
               mc_samples=">=1", iwae_k=">=1", noise=">=0", prior_components=">=1", flow_steps=">=1", init_std=">0", input_shape=">=1", n_classes=">=1")
        if self.kind == "hvae" and not self.stochastic_layers:
            raise VaekitError("model.stochastic_layers: a hierarchical VAE (model.kind=hvae) needs at least one layer below z, e.g. [100]")
        if self.net == "conv" and not self.channels:
            raise VaekitError("model.channels: a conv net needs at least one layer of channels")
        _check_applies(self)

    @property
    def objective_name(self) -> str:
        """The objective's registered name, "auto" resolved to the model's own."""
        if self.objective != "auto":
            return self.objective
        return "elbo" if self.kind == CUSTOM else registry.lookup("model", self.kind).default_objective


@dataclass(frozen=True)
class TrainConfig:
    optimizer: Literal["adam", "adagrad", "sgd"] = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps in all (resume continues)
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global gradient norm
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 to β over these steps
    early_stopping: int | None = None  # patience in epochs without a better validation loss
    seed: int = 0
    checkpoint_every: int = 1  # epochs between checkpoints
    checkpoint_steps: int | None = None  # also checkpoint every this many steps
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    threads: int | None = None  # torch.set_num_threads on CPU
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the networks under bfloat16 autocast, densities in fp32
    compile: bool = False  # torch.compile the encoder and decoder networks
    fused: bool = True  # the hand-derived step (vaekit.fused) for the MLP Bernoulli VAE, where it applies
    flush_denormal: bool = True  # on the CPU, numbers below 1.2e-38 read and written as 0 (FTZ/DAZ), process-wide
    tensorboard: bool = True  # also log to TensorBoard when the optional extra is installed
    schedule: Literal["constant", "step", "exponential", "cosine", "burda"] = "constant"  # the learning rate per step
    warmup_steps: int = 0  # a linear warm-up of the learning rate in front of the schedule
    milestones: tuple[int, ...] = ()  # step schedule: the epochs at which the rate is multiplied by gamma
    gamma: float = 0.1  # step schedule: the factor per milestone; exponential: the factor per epoch
    lr_min: float = 0.0  # cosine schedule: the rate it ends at
    betas: tuple[float, ...] = (0.9, 0.999)  # Adam's β₁, β₂
    eps: float = 1e-8  # Adam's and Adagrad's ε (Burda et al.: 1e-4)
    time_budget: float | str | None = None  # seconds of training, or "10m", "2h"; the schedule stretched over it
    ema: bool = False  # keep an exponential moving average of the weights: validated, tested and saved as the model
    ema_decay: float = 0.999  # the average's weight on its past per step
    select_on: Literal["loss", "elbo", "iwae"] = "loss"  # the validation figure that early stopping and model choice follow
    select_k: int = 50  # K of the validation IWAE bound when select_on is iwae

    def __post_init__(self):
        if isinstance(self.time_budget, str):
            object.__setattr__(self, "time_budget", parse_duration(self.time_budget, "train.time_budget"))
        _validate_fields(self, "train")
        _check(self, "train", lr=">0", batch_size=">=1", epochs=">=0", max_steps=">=1", weight_decay=">=0",
               grad_clip=">0", kl_warmup_steps=">=0", early_stopping=">=1", checkpoint_every=">=1",
               checkpoint_steps=">=1", threads=">=1", seed=">=0", warmup_steps=">=0", milestones=">=1", gamma=">0",
               lr_min=">=0", eps=">0", time_budget=">0", ema_decay=">0", select_k=">=1")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise VaekitError(f"train.betas: expected two numbers in [0, 1), got {list(self.betas)}")
        if self.ema_decay >= 1:
            raise VaekitError(f"train.ema_decay: expected a number below 1, got {self.ema_decay!r}")
        if self.lr_min > self.lr:
            raise VaekitError(f"train.lr_min={self.lr_min:g}: the cosine schedule's floor must not exceed train.lr={self.lr:g}")


def parse_duration(text: str, what: str) -> float:
    """Seconds from "90", "90s", "10m" or "1.5h"; one line naming ``what`` otherwise."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    scale = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise VaekitError(f"{what}={text!r}: expected a duration such as 600, 90s, 10m or 1.5h")
    return value


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str | None = "runs/vae"  # None: a fit in memory that writes nothing

    def __post_init__(self):
        if self.out is not None and not (isinstance(self.out, str) and self.out.strip()):
            raise VaekitError(f"out={self.out!r}: expected the path of a run directory, such as runs/vae "
                              "(an empty one would write into the current folder)")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready values (tuples as lists)."""
        return _to_plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        """The config as indented JSON, as config.json holds it."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "Config":
        """A Config from plain values; unknown keys and wrong types are one-line errors naming ``source``."""
        return _build(cls, d, source)

    def override(self, assignments: list[str], defaults: list[str] = ()) -> "Config":
        """Apply ``section.key=value`` strings; values are read as JSON, else as plain strings. ``defaults`` are
        applied first (a preset's): one of their model keys that the final model does not read is dropped, so a
        flag that changes the model kind or net overrides a preset instead of clashing with it."""
        d = self.to_dict()
        given = {_assign(d, a) for a in assignments}
        for a in defaults:
            key = a.partition("=")[0].strip()
            if key not in given:
                _assign(d, a)
                if key.startswith("model.") and key[6:] not in _read_keys(d["model"]):
                    d["model"][key[6:]] = getattr(ModelConfig, key[6:])
        for a in assignments:
            _assign(d, a)
        return Config.from_dict(d, source="--set")


def _assign(d: dict[str, Any], a: str) -> str:
    """Set one ``section.key=value`` in the plain config ``d``; the key."""
    key, sep, raw = a.partition("=")
    if not sep:
        raise VaekitError(f"--set {a!r}: expected section.key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    node = d
    *parents, last = key.strip().split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise VaekitError(f"--set {a!r}: unknown config section {p!r}")
        node = node[p]
    if last not in node:
        raise VaekitError(f"--set {a!r}: unknown config key {key!r}")
    node[last] = value
    return key.strip()


def load_config(path: str | Path) -> Config:
    """Read a JSON or TOML config file."""
    path = Path(path)
    if path.suffix == ".toml":
        try:
            d = tomllib.loads(read_text(path, "config file"))
        except tomllib.TOMLDecodeError as e:
            raise VaekitError(f"{path}: not valid TOML ({e})") from None
    else:
        d = read_json(path, "config file")
    return Config.from_dict(d, source=str(path))


# Keys every model reads, and the keys of the built-in nets; the rest are read by a model kind, an objective or a
# likelihood, each of which names its own in ``config_keys``.
_COMMON_KEYS = frozenset({"kind", "net", "latent_dim", "likelihood", "objective", "init_std", "init_output_bias", "input_shape",
                          "n_classes"})
_NET_KEYS = frozenset({"hidden", "channels", "activation"})
CUSTOM = "custom"  # a part built by hand, with no registered name


def _read_keys(m: dict[str, Any] | Any) -> frozenset[str]:
    """The ModelConfig keys the model a (plain or built) model section describes reads: every model's, and those its
    kind, objective, net and likelihood name in ``config_keys``. Names not registered read everything."""
    get = m.get if isinstance(m, dict) else lambda k: getattr(m, k)
    try:
        kind, net, lik, objective = get("kind"), get("net"), get("likelihood"), get("objective")
        model = registry.lookup("model", kind)
        objective = registry.lookup("objective", model.default_objective if objective == "auto" else objective)
        net = None if net == CUSTOM else registry.lookup("net", net)
        lik_keys = ({"sigma", "gaussian_mean"} if lik == "auto" else
                    getattr(registry.lookup("likelihood", lik), "config_keys", frozenset()) if lik != CUSTOM else frozenset())
        parts = [registry.lookup(kind, get(kind)) for kind in ("prior", "posterior")
                 if kind in model.config_keys and get(kind) != CUSTOM]
    except (VaekitError, TypeError):
        return frozenset(f.name for f in fields(ModelConfig))
    part_keys = frozenset().union(*(getattr(p, "config_keys", frozenset()) for p in parts))
    return (_COMMON_KEYS | model.config_keys | objective.config_keys | getattr(net, "config_keys", _NET_KEYS) | lik_keys
            | part_keys)


def _check_applies(cfg: "ModelConfig") -> None:
    """Names must be registered ("custom" stands for a part built by hand), and a key set away from its default
    must be read by the model it describes."""
    def part(kind: str, key: str) -> Any:
        name = getattr(cfg, key)
        return None if name == CUSTOM else registry.lookup(kind, name, f"model.{key}")

    model = part("model", "kind")
    part("net", "net")
    part("prior", "prior")
    posterior = part("posterior", "posterior")
    if posterior is not None and not getattr(posterior, "density_anywhere", True) and cfg.estimator != "reparameterization":
        raise VaekitError(f"model.estimator={cfg.estimator!r} with model.posterior={cfg.posterior!r}: the estimator needs "
                          "log q(z|x) at any z, which a flow gives at its own draws only; use the reparameterization estimator")
    if cfg.likelihood != "auto":
        part("likelihood", "likelihood")
    if model is None:
        return
    objective = registry.lookup("objective", cfg.objective_name, "model.objective")
    reason = objective.from_config(cfg).refusal(model)
    if reason:
        raise VaekitError(f"model.objective={cfg.objective_name!r}" + (f", model.estimator={cfg.estimator!r}" if cfg.estimator !=
                          "reparameterization" else "") + f" with model.kind={cfg.kind!r}: {reason}")
    read = _read_keys(cfg)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name not in read and value != f.default:
            raise VaekitError(f"model.{f.name}={_to_plain(value)!r} does not apply to this model (model.kind={cfg.kind!r}, "
                              f"model.net={cfg.net!r}, model.likelihood={cfg.likelihood!r}, model.objective={cfg.objective_name!r}); "
                              "remove it or choose a model that reads it")


def _validate_fields(obj: Any, section: str) -> None:
    """Every field has its declared type (a Literal one of its values); lists become tuples. The same checks
    a config file and --set get, so ``TrainConfig(optimizer="adamw")`` fails where it is written."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        object.__setattr__(obj, f.name, _coerce(getattr(obj, f.name), hints[f.name], section, f.name, sep="."))


def _check(obj: Any, section: str, **bounds: str) -> None:
    """Range checks, e.g. lr=">0": a value (or each value of a tuple) must hold; None passes."""
    for name, bound in bounds.items():
        value = getattr(obj, name)
        op, limit = (bound[:2], float(bound[2:])) if bound[1] == "=" else (bound[:1], float(bound[1:]))
        for v in value if isinstance(value, tuple) else (value,):
            if v is not None and isinstance(v, (int, float)) and not (v >= limit if op == ">=" else v > limit):
                what = "at least" if op == ">=" else "greater than"
                raise VaekitError(f"{section}.{name}: expected a value {what} {limit:g}, got {v!r}")


def _to_plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_plain(x) for x in v]
    return v


def _build(cls: type, d: Any, source: str, prefix: str = "") -> Any:
    """``cls`` from a dict; errors read "<source>: <prefix><key>: what was expected"."""
    if not isinstance(d, dict):
        raise VaekitError(f"{source}: {prefix.rstrip('.') or 'config'}: expected a table of keys, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise VaekitError(f"{source}: unknown config key {prefix + unknown[0]!r} (known in this section: {', '.join(sorted(names))})")
    return cls(**{k: _coerce(v, hints[k], source, prefix + k) for k, v in d.items()})


def _coerce(v: Any, tp: Any, source: str, key: str, sep: str = ": ") -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    where = f"{source}{sep}{key}"
    if dataclasses.is_dataclass(tp):
        return _build(tp, v, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner[1:]:  # a second type is a second form the value may take (a duration as "10m")
            try:
                return _coerce(v, a, source, key, sep)
            except VaekitError:
                pass
        return _coerce(v, inner[0], source, key, sep)
    if origin is Literal:
        if v not in args:
            raise VaekitError(f"{where}: expected one of {', '.join(map(repr, args))}, got {v!r}")
        return v
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise VaekitError(f"{where}: expected a list of {args[0].__name__}, got {v!r}")
        return tuple(_coerce(x, args[0], source, key, sep) for x in v)
    if tp is bool:
        if not isinstance(v, bool):
            raise VaekitError(f"{where}: expected true or false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise VaekitError(f"{where}: expected an integer, got {v!r}")
        if not -2**63 <= v < 2**63:  # what torch and numpy can hold
            raise VaekitError(f"{where}: {v} is too large; expected an integer below 2**63")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise VaekitError(f"{where}: expected a finite number, got {v!r}")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise VaekitError(f"{where}: expected a string, got {v!r}")
        return v
    raise TypeError(f"unsupported config type {tp!r}")  # a programming error, not user input


__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "load_config"]

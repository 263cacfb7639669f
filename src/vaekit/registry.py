"""Names for the parts a model is made of: likelihoods, priors, posteriors, objectives, models and nets.

A name becomes a class here and nowhere else. vaekit's own parts register themselves
the way a user's do, so a registered name works wherever a built-in one does: in
``VAE(likelihood=...)``, on the command line and in ``config.json``::

    @vaekit.register("likelihood", "poisson")
    class Poisson(vaekit.distributions.Likelihood): ...

The registry only maps names to objects; it imports no other vaekit module, so every
module can use it.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, TypeVar

from .errors import VaekitError

KINDS = ("likelihood", "prior", "posterior", "objective", "model", "net")
T = TypeVar("T")

_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: make ``name`` stand for the decorated class (or, for a net, function) of ``kind``.

    Registering a name again replaces it (a module reloaded in a notebook registers its classes anew).
    """
    _check_kind(kind)
    if not isinstance(name, str) or not name:
        raise VaekitError(f"register({kind!r}, {name!r}): the name must be a non-empty string")

    def decorate(obj: T) -> T:
        _REGISTRY[kind][name] = obj
        return obj

    return decorate


def lookup(kind: str, name: str, where: str | None = None) -> Any:
    """What ``name`` stands for, or a one-line error naming ``where`` it was given and the names known for ``kind``."""
    _check_kind(kind)
    try:
        return _REGISTRY[kind][name]
    except (KeyError, TypeError):
        raise VaekitError(f"{where or kind}: expected one of {', '.join(map(repr, names(kind)))}, got {name!r} (a {kind} of "
                          f"your own registers with vaekit.register({kind!r}, name) in a module imported first: "
                          "vaekit --import MODULE ...)") from None


def names(kind: str) -> list[str]:
    """The registered names of ``kind``, in registration order."""
    _check_kind(kind)
    return list(_REGISTRY[kind])


def name_of(kind: str, obj: Any) -> str | None:
    """The name ``obj`` (a class or function) is registered under, or None."""
    _check_kind(kind)
    for name, registered in _REGISTRY[kind].items():
        if registered is obj:
            return name
    return None


def import_modules(modules: list[str]) -> None:
    """Import the user's modules that register parts (``vaekit --import``), looked up beside the user as
    ``python -m`` does. The only way a name of the user's gets its code: a run directory never imports."""
    if modules and "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise VaekitError(f"--import {name}: cannot import it ({e})") from None


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise VaekitError(f"registry kind {kind!r}: expected one of {', '.join(KINDS)}")


__all__ = ["KINDS", "import_modules", "lookup", "name_of", "names", "register"]

"""The one rule registry: a rule is a name, a factory of its learning signal and four tags.

    register("bcm", BCM, gradient=False, local=True, needs_targets=False, perturbs_forward=False)

    @signal("half_sgd", gradient=True)
    def half_sgd(ctx):
        g = ctx.descent(ctx.backprop(ctx.output_delta()))
        return [(0.5 * w, None if b is None else 0.5 * b) for w, b in g]

``make_rule(name, gamma=…, sigma=…, **hyper)`` is the single builder every experiment, the CLI and
``RuleOptimizer`` use: the named signal (with its hyperparameters by name), then forward-pass noise σ,
then decoupled weight decay γ (each a float, or one value per ensemble member). Experiment rule lists and
the atlas's categories are ``rule_names(**tags)``: live views, so a rule registered from user code before
``plasticlab.run`` is a valid choice everywhere without a package edit.

A rule may be named with hyperparameters as one string, ``"bcm:rate=0.2"`` or ``"dfa:scale=2"`` (several
joined by ``:``), which is how the CLI's ``--set rules=sgd,bcm:rate=0.2`` passes them.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from plasticlab.errors import PlasticlabError, unknown_choice
from plasticlab.rules.base import Chain, Context, Decay, PerMember, Signal, Transform, Updates, chain

TAGS = ("gradient", "local", "needs_targets", "perturbs_forward")


@dataclass(frozen=True)
class RuleSpec:
    """A registered rule: its factory and what it is.

    gradient: its update field is minus the gradient of some loss (sgd, random_nn);
    local: it reads only a synapse's pre/post activity (plus at most a global scalar), no error transport;
    needs_targets: it reads the targets y (or, in RuleOptimizer, the output error from autograd);
    perturbs_forward: its signal changes the weights of the forward pass."""

    name: str
    factory: Callable[..., Transform]
    gradient: bool
    local: bool
    needs_targets: bool
    perturbs_forward: bool

    def hyperparameters(self) -> dict[str, Any]:
        """The factory's keyword parameters and their defaults."""
        return {
            k: p.default
            for k, p in inspect.signature(self.factory).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def check(self, hyper: dict[str, Any]) -> dict[str, Any]:
        """``hyper`` checked against the factory's declaration: every key one of its keyword parameters,
        every value of its default's kind (a float default takes finite numbers, an int default integers,
        a str default strings, a bool default true/false; a None default or a per-member sequence is the
        factory's to check). Returns the values coerced (``2`` for a float default becomes ``2.0``)."""
        valid = self.hyperparameters()
        out = {}
        for key, value in hyper.items():
            if key not in valid:
                raise unknown_choice(f"hyperparameter for rule {self.name!r}", key, valid or ["(none)"])
            out[key] = _checked(self.name, key, value, valid[key])
        return out

    def build(self, **hyper: Any) -> list[Transform]:
        """The rule's pieces for these hyperparameters (a factory may return a Chain: it is flattened)."""
        piece = self.factory(**self.check(hyper))
        parts = list(piece.parts) if isinstance(piece, Chain) else [piece]
        if not isinstance(parts[0], Signal):
            raise PlasticlabError(f"rule {self.name!r}: its factory must return a Signal, got {parts[0]!r}")
        return parts


def _kind_of(default: Any) -> tuple[type, str] | None:
    if isinstance(default, bool):
        return bool, "true or false"
    if isinstance(default, int):
        return int, "an integer"
    if isinstance(default, float):
        return float, "a finite number"
    if isinstance(default, str):
        return str, "a string"
    return None  # None / no default: any value, checked by the factory


def _checked(rule: str, key: str, value: Any, default: Any) -> Any:
    """One hyperparameter value against its default's kind, in the experiments' message style."""
    kind = _kind_of(default)
    if kind is None or isinstance(value, (list, tuple, np.ndarray, torch.Tensor)):
        return value  # per-member values (one per ensemble member) are the factory's to check
    want, words = kind
    why = None
    if want is bool:
        why = None if isinstance(value, (bool, np.bool_)) else "not true/false"
    elif want is str:
        why = None if isinstance(value, str) else "not a string"
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        why = "not a number"
    elif not np.isfinite(value):
        why = "not finite"
    elif want is int and float(value) != int(value):
        why = "not an integer"
    if why is not None:
        raise PlasticlabError(
            f"bad value for rule {rule!r} hyperparameter {key!r}: {value!r} ({why}); must be {words} "
            f"(default {default!r})"
        )
    return want(value) if want in (int, float) else value


def check_rule(text: str) -> tuple[str, dict[str, Any]]:
    """``"dfa:scale=2"`` -> ("dfa", {"scale": 2.0}), or a one-line PlasticlabError: an unknown rule, an
    unknown hyperparameter (naming the rule's own), a value of the wrong kind, or one the rule's factory
    refuses. Cheap (no tensors), so experiments check their rule lists with it before any work."""
    name, hyper = parse_rule(text)
    spec = get(name)
    hyper = spec.check(hyper)
    if hyper:
        try:
            spec.factory(**hyper)  # the factory's own checks (e.g. dfa's feedback choices)
        except PlasticlabError as e:
            raise PlasticlabError(f"rule {text!r}: {e}") from None
        except Exception:  # e.g. a factory that needs more than its hyperparameters: checked when built
            pass
    return name, hyper


_RULES: dict[str, RuleSpec] = {}


def register(
    name: str,
    factory: Callable[..., Transform],
    *,
    gradient: bool,
    local: bool,
    needs_targets: bool,
    perturbs_forward: bool,
    replace: bool = False,
) -> RuleSpec:
    """Register ``factory(**hyper) -> Signal`` (or a Chain starting with one) under ``name``.

    Registering a taken name is an error unless ``replace=True`` (e.g. re-running a notebook cell)."""
    if not isinstance(name, str) or not name or ":" in name or "," in name:
        raise PlasticlabError(f"a rule name is a non-empty string without ':' or ',', got {name!r}")
    if name in _RULES and not replace:
        raise PlasticlabError(f"rule {name!r} is already registered (pass replace=True to redefine it)")
    spec = RuleSpec(name, factory, bool(gradient), bool(local), bool(needs_targets), bool(perturbs_forward))
    _RULES[name] = spec
    return spec


F = TypeVar("F", bound=Callable[..., Transform])


def registered(
    name: str,
    *,
    gradient: bool,
    local: bool,
    needs_targets: bool,
    perturbs_forward: bool,
    replace: bool = False,
) -> Callable[[F], F]:
    """Class (or factory) decorator form of ``register``: the decorated callable is the factory."""

    def wrap(factory: F) -> F:
        tags = dict(gradient=gradient, local=local, needs_targets=needs_targets, perturbs_forward=perturbs_forward)
        register(name, factory, **tags, replace=replace)
        return factory

    return wrap


def unregister(name: str) -> None:
    """Remove a registered rule (tests, notebooks)."""
    _RULES.pop(name, None)


class FunctionSignal(Signal):
    """A stateless learning signal from a plain function ``fn(ctx, **hyper) -> updates``."""

    def __init__(self, name: str, fn: Callable[..., Updates], hyper: dict[str, Any]):
        self.fn, self.hyper = fn, hyper
        self.name = name if not hyper else name + "(" + ", ".join(f"{k}={v!r}" for k, v in hyper.items()) + ")"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """The function's updates; the state stays empty."""
        return self.fn(ctx, **self.hyper), state


def signal(
    name: str,
    *,
    gradient: bool,
    local: bool = False,
    needs_targets: bool = True,
    perturbs_forward: bool = False,
    replace: bool = False,
) -> Callable[[Callable[..., Updates]], Callable[..., Updates]]:
    """Decorator registering a stateless signal ``fn(ctx, **hyper)`` that returns per-layer (dW, db)
    descent directions; keyword parameters after ``ctx`` are the rule's hyperparameters. Returns ``fn``."""

    def wrap(fn: Callable[..., Updates]) -> Callable[..., Updates]:
        params = list(inspect.signature(fn).parameters.values())[1:]

        def factory(**hyper: Any) -> FunctionSignal:
            return FunctionSignal(name, fn, hyper)

        factory.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        tags = dict(gradient=gradient, local=local, needs_targets=needs_targets, perturbs_forward=perturbs_forward)
        registered(name, **tags, replace=replace)(factory)
        return fn

    return wrap


def parse_rule(text: str) -> tuple[str, dict[str, Any]]:
    """``"bcm:rate=0.2"`` -> ("bcm", {"rate": 0.2}); values are Python literals (else strings)."""
    name, *items = str(text).split(":")
    hyper: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise PlasticlabError(f"bad rule {text!r}: hyperparameters go as name:key=value, e.g. 'bcm:rate=0.2'")
        try:
            hyper[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            hyper[key.strip()] = value.strip()
    return name.strip(), hyper


def get(name: str) -> RuleSpec:
    """The registered rule ``name`` (hyperparameters in the string are ignored)."""
    base, _ = parse_rule(name)
    if base not in _RULES:
        raise unknown_choice("rule", base, _RULES)
    return _RULES[base]


class RuleNames(Sequence[str]):
    """The names of the registered rules whose tags match, looked up when used (not when created), so an
    experiment's ``choices`` include rules registered later. ``"bcm:rate=0.2"`` is in it when ``"bcm"`` is.
    ``where(spec)``, if given, must also hold (a property the four tags do not say)."""

    def __init__(self, tags: dict[str, bool] | None = None, where: Callable[[RuleSpec], bool] | None = None):
        tags = tags or {}
        for key in tags:
            if key not in TAGS:
                raise unknown_choice("rule tag", key, TAGS)
        self.tags, self.where = tags, where

    def _names(self) -> list[str]:
        return [
            n
            for n, s in _RULES.items()
            if all(getattr(s, k) == v for k, v in self.tags.items()) and (self.where is None or self.where(s))
        ]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __getitem__(self, i):
        return self._names()[i]

    def __contains__(self, value: object) -> bool:
        """Whether ``value`` names one of these rules. A rule of this view with bad hyperparameters
        (``"dfa:scal=2"``, ``"dfa:scale=nan"``) raises the rule's own one-line PlasticlabError instead of
        answering False, so a parameter check says what is wrong with it rather than listing rule names."""
        if not isinstance(value, str):
            return False
        try:
            name, _ = parse_rule(value)
        except PlasticlabError:
            return False
        if name not in self._names():
            return False
        check_rule(value)
        return True

    def __repr__(self) -> str:
        return repr(self._names())


def rule_names(**tags: bool) -> RuleNames:
    """Registered rule names, optionally only those with the given tags: ``rule_names(local=False)``."""
    return RuleNames(tags)


def make_rule(
    name: str,
    gamma: PerMember = 0.0,
    sigma: PerMember = 0.0,
    *,
    signal_sigma: PerMember = 0.0,
    noise_at: str = "weights",
    decay_biases: bool = False,
    **hyper: Any,
) -> Chain:
    """The named rule as experiments use it: signal(**hyper) [-> signal_noise] [-> param_noise(sigma)]
    -> weight_decay(gamma) (a rule whose factory takes ``gamma`` places its own decay, e.g. adam_l2's coupled
    L2). ``gamma``/``sigma``/``signal_sigma`` are floats or one value per ensemble member;
    ``name`` may carry hyperparameters (``"bcm:rate=0.2"``), merged under the keyword ones.

    ``noise_at`` says where ``sigma`` enters: ``"weights"`` (forward-pass weight noise, ``param_noise``) or
    ``"signal"`` (Gaussian noise added to the learning signal every step, ``signal_noise``; the same as
    passing it as ``signal_sigma``). Signal noise goes right after the signal piece: it is noise on the
    gradient, before any preconditioning or coupled L2. ``decay_biases``: the rule's decay (decoupled or
    coupled) acts on biases too, as torch's ``weight_decay`` does."""
    from plasticlab.errors import check_choice
    from plasticlab.rules.transforms import param_noise, signal_noise, weight_decay

    check_choice("noise_at", noise_at, NOISE_AT)
    if noise_at == "signal":
        if _nonzero(signal_sigma):
            raise PlasticlabError("give the signal noise once: sigma with noise_at='signal', or signal_sigma")
        sigma, signal_sigma = 0.0, sigma
    spec = get(name)
    hyper = {**parse_rule(name)[1], **hyper}  # checked by spec.build
    owns_decay = "gamma" in spec.hyperparameters()  # e.g. adam_l2: coupled L2 inside the rule
    parts = spec.build(**hyper, gamma=gamma) if owns_decay else spec.build(**hyper)
    if _nonzero(signal_sigma):
        parts[1:1] = [signal_noise(signal_sigma)]
    # forward-pass noise joins the learning signal: before the rule's own decay piece if it has one
    cut = next((i for i, p in enumerate(parts) if isinstance(p, Decay)), len(parts))
    if _nonzero(sigma):
        parts[cut:cut] = [param_noise(sigma)]
    if not owns_decay:
        parts.append(weight_decay(gamma))
    if decay_biases:
        for p in parts:
            if isinstance(p, Decay) and hasattr(p, "biases"):
                setattr(p, "biases", True)  # noqa: B010  (WeightDecay and CoupledL2 both carry it)
    return chain(*parts)


NOISE_AT = ["weights", "signal"]


def _nonzero(v: PerMember) -> bool:
    if isinstance(v, torch.Tensor):
        return bool(v.ne(0).any())
    # NumPy answers for lists and arrays alike; a read-only array (a pandas column's) made torch warn
    return bool(np.any(np.asarray(v, dtype=np.float64) != 0))

"""Per-rule training hints, in one place beside the registry (as DomainBed's ``hparams_registry``).

Experiments that train many rules at once need to know, per rule, which of their step sizes it takes:
``gradient`` rules (SGD-like steps of the error gradient or a stand-in for it: sgd, dfa, fa, random_nn …),
``adaptive`` rules (per-weight normalised steps: adam, adam_l2) and ``local`` rules (activity-only
plasticity: hebbian, oja, bcm …, whose stable step sizes are set by the activity scale). A rule's group
defaults from its registry tags (local → ``local``, else ``gradient``); a rule whose step behaves otherwise
declares it once, beside its registration, with :func:`declare`. Experiments read :func:`lr_group` or
:func:`pick_lr` and never branch on rule names.
"""

from __future__ import annotations

from typing import Literal

from plasticlab.errors import PlasticlabError, check_choice
from plasticlab.rules.registry import get, parse_rule

LrGroup = Literal["gradient", "adaptive", "local"]
LR_GROUPS: tuple[LrGroup, ...] = ("gradient", "adaptive", "local")
_DECLARED: dict[str, LrGroup] = {}


def declare(name: str, *, lr_group: LrGroup) -> None:
    """Declare rule ``name``'s step-size group where it differs from what its tags imply."""
    _DECLARED[name] = check_choice("lr_group", lr_group, LR_GROUPS)  # type: ignore[assignment]


def lr_group(rule: str) -> LrGroup:
    """The step-size group of ``rule`` (a name, with or without ``:hyper=value`` parts)."""
    name = parse_rule(rule)[0]
    spec = get(name)  # an unknown rule is one error naming the valid ones
    if name in _DECLARED:
        return _DECLARED[name]
    return "local" if spec.local else "gradient"


def pick_lr(rule: str, **lrs: float) -> float:
    """The step size for ``rule`` from one per group, e.g. ``pick_lr(r, gradient=0.01, adaptive=1e-3)``; a
    group not given falls back to ``gradient`` (an experiment with one lr for every rule passes just that)."""
    for key in lrs:
        check_choice("learning-rate group", key, LR_GROUPS)
    group = lr_group(rule)
    if group in lrs:
        return lrs[group]
    if "gradient" in lrs:
        return lrs["gradient"]
    raise PlasticlabError(f"no learning rate for rule {rule!r} (group {group!r}); give {group}= or gradient=")

"""Which rule the curl-descent engine runs, taken from ``plasticlab.rules``, and its fused form.

A member's rule is named by a label: one of the engine's four presets, the rules the curl-descent paper
compares (Ninou et al. 2025), named so that no preset is also a registered rule's name,

    "gd"               -> sgd()                                  (k1, k2 ignored: nothing flips)
    "gd_flip"          -> chain(sgd(), flip_columns([k1, k2]))   (the paper's curl descent)
    "dfa_uniform"      -> dfa(feedback="uniform")                (k1, k2 ignored)
    "dfa_uniform_flip" -> chain(dfa(feedback="uniform"), flip_columns([k1, k2]))

or any registered rule (``"sgd"``, ``"dfa"``, ``"curl"``, ``"bcm:rate=0.2"``, a rule registered from user
code), with the registry's meaning, whose pieces are followed by ``flip_columns([k1, k2])`` when some k is
non-zero; ``simulate`` also takes a rule object (a ``Chain`` or a ``Signal``). Members of one batch may
differ in their learning signal only (through ``per_member``), and in their flips. (Before these names the
presets were "curl", "dfa" and "dfa_flip": the first two are registered rules of another meaning, so
results/ folders that stored them are migrated by ``python -m plasticlab.sweeps.migrate curl-presets``.)

``fuse`` recognises the rules the engine's fused step computes directly: an ``sgd`` or ``dfa`` signal
(or a per-member choice between them), column flips, and a zero decay. Their arithmetic there is the same as
the pieces' (the flip multiplies the presynaptic activity before the outer product, which equals flipping
the update's columns exactly, since negation is exact); any other rule runs through ``Context``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plasticlab.errors import PlasticlabError
from plasticlab.rules import Chain, Transform, chain, get, parse_rule
from plasticlab.rules.atlas import Flip
from plasticlab.rules.flips import FlipColumns, PerMember, flip_columns, per_member
from plasticlab.rules.signals import DFA, SGD
from plasticlab.rules.transforms import WeightDecay

# label -> (signal, do the member's k1/k2 flip its columns)
PRESETS: dict[str, tuple[str, bool]] = {
    "gd": ("sgd", False),
    "gd_flip": ("sgd", True),
    "dfa_uniform": ("dfa:feedback='uniform'", False),
    "dfa_uniform_flip": ("dfa:feedback='uniform'", True),
}

RENAMED = {"curl": "gd_flip", "dfa": "dfa_uniform", "dfa_flip": "dfa_uniform_flip"}  # old preset -> new


def label_pieces(label: str) -> tuple[list[Transform], bool]:
    """The pieces a member label names (before flips) and whether the member's k1/k2 apply."""
    name, flips = PRESETS.get(label, (label, True))
    base, hyper = parse_rule(name)
    parts = get(base).build(**hyper)
    return parts[:1] + [p for p in parts[1:] if not _no_op(p)], flips


def _no_op(piece: Transform) -> bool:
    """A piece that leaves every update as it is (``sgd``'s default zero decay)."""
    return type(piece) is WeightDecay and isinstance(piece.gamma, float) and piece.gamma == 0.0


def build_rule(members: pd.DataFrame, given: Transform | None = None) -> Chain:
    """One rule for the batch: ``given`` (one for every member) or the members' labels; then their flips."""
    k1, k2 = members.k1.to_numpy(), members.k2.to_numpy()
    if given is not None:
        parts = list(given.parts) if isinstance(given, Chain) else [given]
    else:
        labels = list(dict.fromkeys(members.rule))
        built = {lab: label_pieces(lab) for lab in labels}
        flipped = members.rule.map(lambda lab: built[lab][1]).to_numpy()
        k1, k2 = np.where(flipped, k1, 0), np.where(flipped, k2, 0)
        parts = _shared(built, labels, members.rule.map(labels.index).to_numpy())
    if (k1 != 0).any() or (k2 != 0).any():
        if any(flips_columns(p) for p in parts):
            was = [old for old, new in RENAMED.items() if new == "gd_flip"]
            raise PlasticlabError(
                f"the rule {parts[0]!r} flips columns itself, and the members' k1/k2 would flip them again; give "
                f"k1 = k2 = 0 with it, or use the engine preset 'gd_flip' (named {was[0]!r} before) for the "
                "paper's curl descent"
            )
        parts.insert(1, flip_columns([k1, k2]))
    return chain(*parts)


def flips_columns(piece: Transform) -> bool:
    """A piece that flips columns of its own (a flip transform, or a signal such as the registry's curl)."""
    return isinstance(piece, FlipColumns) or isinstance(getattr(piece, "flip", None), Flip)


def _shared(built: dict, labels: list[str], which: np.ndarray) -> list[Transform]:
    """The pieces of several labels as one rule: only the learning signal may differ between them."""
    if len(labels) == 1:
        return list(built[labels[0]][0])
    rests = {repr(built[lab][0][1:]) for lab in labels}
    if len(rests) > 1:
        raise PlasticlabError(
            f"members of one batch may differ only in their learning signal; {', '.join(labels)} differ in "
            "more (run them as separate batches)"
        )
    signals = [built[lab][0][0] for lab in labels]
    if len({repr(s) for s in signals}) == 1:  # e.g. "gd" and "gd_flip": one signal, flipped or not
        return list(built[labels[0]][0])
    return [per_member(signals, which), *built[labels[0]][0][1:]]


@dataclass(frozen=True)
class Fused:
    """A rule in the form the fused step takes: the DFA feedback and mask, and the column diagonals."""

    Ft: torch.Tensor  # (E, 1, N) feedback carrying the error back (rows of non-DFA members unused)
    dfa_mask: torch.Tensor  # (E, 1, 1) bool: members whose error travels through Ft
    d1: torch.Tensor  # (E, M) column diagonal of W1's update
    d2: torch.Tensor  # (E, N)


def fuse(rule: Transform, state: tuple, W2: torch.Tensor, M: int) -> Fused | None:
    """``rule`` (with its initial ``state``) as the fused step's inputs, or None if it is not one of its."""
    parts, states = (list(rule.parts), list(state)) if isinstance(rule, Chain) else ([rule], [state])
    E, N, dt = W2.shape[0], W2.shape[2], W2.dtype
    back = _fused_signal(parts[0], states[0], E)
    if back is None:
        return None
    Ft, mask = back
    d1, d2 = torch.ones(E, M, dtype=dt), torch.ones(E, N, dtype=dt)
    for p, s in zip(parts[1:], states[1:]):
        if isinstance(p, FlipColumns):
            d1, d2 = d1 * s[0], d2 * s[1]
        elif not _no_op(p):
            return None
    if Ft is None:
        Ft = torch.zeros(E, 1, N, dtype=dt)
    return Fused(Ft.to(dt), mask, d1, d2)


def _fused_signal(sig: Transform, state, E: int) -> tuple[torch.Tensor | None, torch.Tensor] | None:
    """(Ft, dfa mask) of an sgd / dfa signal or a per-member choice of them; None for any other signal."""
    if type(sig) is SGD:
        return None, torch.zeros(E, 1, 1, dtype=torch.bool)
    if type(sig) is DFA:
        return state[0].transpose(1, 2).contiguous(), torch.ones(E, 1, 1, dtype=torch.bool)
    if type(sig) is not PerMember or not all(type(s) in (SGD, DFA) for s in sig.signals):
        return None
    mask = torch.zeros(E, dtype=torch.bool)
    Ft = None
    for i, (s, st) in enumerate(zip(sig.signals, state)):
        if type(s) is DFA:
            mine = sig.which == i
            F = st[0].transpose(1, 2)
            Ft = F.clone() if Ft is None else torch.where(mine[:, None, None], F, Ft)
            mask |= mine
    return (None if Ft is None else Ft.contiguous()), mask.reshape(E, 1, 1)

"""Learning rules as composable pieces: ``chain(dfa(), weight_decay(1e-3), signal_noise(0.1))``."""

from __future__ import annotations

from plasticlab.errors import unknown_choice
from plasticlab.rules.atlas import (
    ATLAS_SIGNALS,
    bcm,
    curl,
    exp_grad,
    fa,
    flip,
    sign_symmetry,
    soft_wta,
    three_factor,
)
from plasticlab.rules.base import Chain, Context, StepOutput, Transform, chain, tree_map
from plasticlab.rules.signals import anti_hebbian, dfa, hebbian, oja, random_nn, sgd
from plasticlab.rules.transforms import adam, l2, param_noise, signal_noise, weight_decay

SIGNALS = {
    "sgd": sgd,
    "dfa": dfa,
    "random_nn": random_nn,
    "hebbian": hebbian,
    "anti_hebbian": anti_hebbian,
    "oja": oja,
    **ATLAS_SIGNALS,
}


def make_rule(name: str, gamma: float = 0.0, param_sigma: float = 0.0, signal_sigma: float = 0.0) -> Chain:
    """A named rule as used by experiments: a signal name, "adam" (sgd preconditioned by Adam, decay
    decoupled: AdamW) or "adam_l2" (coupled L2 added to the gradient before Adam: torch's
    ``Adam(weight_decay=γ)``), with the noise pieces and the decay."""
    if name == "adam":
        parts = [sgd(), adam()]
    elif name == "adam_l2":
        parts = [sgd()]
    elif name in SIGNALS:
        parts = [SIGNALS[name]()]
    else:
        raise unknown_choice("rule", name, RULE_NAMES)
    if param_sigma:
        parts.append(param_noise(param_sigma))
    if signal_sigma:
        parts.append(signal_noise(signal_sigma))
    if name == "adam_l2":
        return chain(*parts, l2(gamma), adam())
    parts.append(weight_decay(gamma))
    return chain(*parts)


RULE_NAMES = [*SIGNALS, "adam", "adam_l2"]

__all__ = [
    "RULE_NAMES",
    "SIGNALS",
    "Chain",
    "Context",
    "StepOutput",
    "Transform",
    "adam",
    "anti_hebbian",
    "bcm",
    "chain",
    "curl",
    "dfa",
    "exp_grad",
    "fa",
    "flip",
    "hebbian",
    "l2",
    "make_rule",
    "oja",
    "param_noise",
    "random_nn",
    "sgd",
    "sign_symmetry",
    "signal_noise",
    "soft_wta",
    "three_factor",
    "tree_map",
    "weight_decay",
]

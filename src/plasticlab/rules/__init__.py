"""Learning rules as composable pieces: ``chain(dfa(), weight_decay(1e-3), signal_noise(0.1))``.

Every rule is registered once (``register`` / ``@signal``, next to its definition) and built by name with
``make_rule(name, gamma=…, sigma=…, **hyper)``; ``RuleOptimizer`` runs any rule as a torch optimizer.
"""

from __future__ import annotations

from plasticlab.rules.atlas import bcm, curl, exp_grad, fa, flip, sign_symmetry, soft_wta, three_factor
from plasticlab.rules.base import Chain, Context, Decay, Signal, StepOutput, Transform, Updates, chain, tree_map
from plasticlab.rules.flips import FlipColumns, PerMember, column_flips, flip_columns, per_member
from plasticlab.rules.hints import LR_GROUPS, lr_group, pick_lr
from plasticlab.rules.optim import RuleOptimizer
from plasticlab.rules.registry import (
    RuleSpec,
    get,
    make_rule,
    parse_rule,
    register,
    registered,
    rule_names,
    signal,
    unregister,
)

# the built-in rules register themselves on import, in this order (the order experiments list them in)
from plasticlab.rules.signals import anti_hebbian, dfa, hebbian, oja, random_nn, sgd
from plasticlab.rules.transforms import TRANSFORMS, adam, l2, param_noise, signal_noise, weight_decay

__all__ = [
    "LR_GROUPS",
    "TRANSFORMS",
    "Chain",
    "Context",
    "Decay",
    "FlipColumns",
    "PerMember",
    "RuleOptimizer",
    "RuleSpec",
    "Signal",
    "StepOutput",
    "Transform",
    "Updates",
    "adam",
    "anti_hebbian",
    "bcm",
    "chain",
    "column_flips",
    "curl",
    "dfa",
    "exp_grad",
    "fa",
    "flip",
    "flip_columns",
    "get",
    "hebbian",
    "l2",
    "lr_group",
    "make_rule",
    "oja",
    "param_noise",
    "parse_rule",
    "per_member",
    "pick_lr",
    "random_nn",
    "register",
    "registered",
    "rule_names",
    "sgd",
    "sign_symmetry",
    "signal",
    "signal_noise",
    "soft_wta",
    "three_factor",
    "tree_map",
    "unregister",
    "weight_decay",
]

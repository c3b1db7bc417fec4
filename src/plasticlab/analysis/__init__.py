"""Non-gradient analysis of any rule: the rule as a vector field on weight space, its Jacobian's
symmetric/antisymmetric split, spectrum, and a Jacobian-free loop (circulation) test."""

from plasticlab.analysis.vector_field import (
    FieldAnalysis,
    LoopResult,
    RuleField,
    analyse,
    analyse_jacobian,
    flatten,
    loop_test,
    member,
    member_batch,
    nongradient_fraction,
    nongradient_fraction_hutchinson,
    rule_field,
    split,
    warm_state,
)

__all__ = [
    "FieldAnalysis",
    "LoopResult",
    "RuleField",
    "analyse",
    "analyse_jacobian",
    "flatten",
    "loop_test",
    "member",
    "member_batch",
    "nongradient_fraction",
    "nongradient_fraction_hutchinson",
    "rule_field",
    "split",
    "warm_state",
]

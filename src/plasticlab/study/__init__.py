"""The study framework: everything experiments share.

- :mod:`~plasticlab.study.contract`: the :class:`Experiment` contract (declared params, typed chunk specs,
  ``run_chunk(spec, ctx)``, pure ``claims`` / ``figures`` / ``tables``, short ``notes``);
- :mod:`~plasticlab.study.params`: declared parameter constraints and the one validator;
- :mod:`~plasticlab.study.registry`: the registry, discovery of ``plasticlab.experiments`` and plugins;
- :mod:`~plasticlab.study.context`: :class:`RunContext` (device, compile flag, threads, plugins);
- :mod:`~plasticlab.study.claims`: claims as data and the one verdict rule;
- :mod:`~plasticlab.study.report`: the report writer, the same for every experiment.
"""

from plasticlab.study.context import RunContext
from plasticlab.study.contract import Experiment, Figure, Table, convention, run_chunks, shared_fields
from plasticlab.study.params import (
    COMMON,
    COMMON_RELATIONS,
    DTYPE,
    FRACTION,
    MAX_SEED,
    MAX_SIZE,
    MAX_STEPS,
    NONNEG,
    POSITIVE,
    SEED_BLOCK,
    SEEDS,
    SIZE,
    STEPS,
    Boolean,
    Constraint,
    Interval,
    ListOf,
    Options,
    Require,
    Text,
    coerce,
    constraint_for,
    parse_value,
    seed_blocks,
    validate_params,
)
from plasticlab.study.registry import all_experiments, get, load_plugins, register

__all__ = [
    "COMMON",
    "COMMON_RELATIONS",
    "DTYPE",
    "FRACTION",
    "MAX_SEED",
    "MAX_SIZE",
    "MAX_STEPS",
    "NONNEG",
    "POSITIVE",
    "SEEDS",
    "SEED_BLOCK",
    "SIZE",
    "STEPS",
    "Boolean",
    "Constraint",
    "Experiment",
    "Figure",
    "Interval",
    "ListOf",
    "Options",
    "Require",
    "RunContext",
    "Table",
    "Text",
    "all_experiments",
    "coerce",
    "constraint_for",
    "convention",
    "get",
    "load_plugins",
    "parse_value",
    "register",
    "run_chunks",
    "seed_blocks",
    "shared_fields",
    "validate_params",
]

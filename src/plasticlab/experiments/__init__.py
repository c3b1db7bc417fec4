"""Experiments, registered by name. Each module defines one (or a few) and registers it with
``@register``; modules are discovered automatically, so adding one touches no shared file."""

from plasticlab.experiments.base import Experiment, all_experiments, get, register

__all__ = ["Experiment", "all_experiments", "get", "register"]

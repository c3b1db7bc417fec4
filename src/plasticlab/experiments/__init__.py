"""Experiments, grouped by paper: ``hebbian/`` (Koplow, Poggio & Ziyin), ``curl/`` (Ninou, Kadmon &
Cayco-Gajic) and ``rules/`` (beyond the papers: the rule atlas and rule identification). Each module defines
one experiment and registers it with ``@register``; modules are discovered automatically, so adding one
touches no shared file (see :mod:`plasticlab.study`)."""

from plasticlab.study import Experiment, all_experiments, get, register

__all__ = ["Experiment", "all_experiments", "get", "register"]

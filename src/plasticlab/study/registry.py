"""The experiment registry, experiment discovery and plugins.

Experiments live in ``plasticlab.experiments`` and its sub-packages (one per paper or family) and are found by
walking them; a module whose name starts with ``_`` holds shared helpers and is not walked. A *plugin* is a
user's module (a dotted name on ``sys.path`` or a ``.py`` file) that registers rules or experiments when
imported: ``--plugin MODULE`` on the CLI, ``plugins=`` in the Python API, or an entry point in the group
``plasticlab.plugins``. Every worker process (local pool or Dask) imports the same plugins before it looks an
experiment up, so a user's rule runs by name at any ``--workers`` and on a cluster.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from plasticlab.errors import PlasticlabError, unknown_choice

if TYPE_CHECKING:
    from plasticlab.study.contract import Experiment

ENTRY_POINT_GROUP = "plasticlab.plugins"
EXPERIMENTS_PACKAGE = "plasticlab.experiments"
_REGISTRY: dict[str, Experiment] = {}
_LOADED: set[str] = set()


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator adding an experiment to the registry under its ``name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def _walk(package: str) -> None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return
    for mod in pkgutil.iter_modules(spec.submodule_search_locations):
        if mod.name.startswith("_"):
            continue
        full = f"{package}.{mod.name}"
        importlib.import_module(full)
        if mod.ispkg:
            _walk(full)


def _discover() -> None:
    _walk(EXPERIMENTS_PACKAGE)
    load_plugins(entry_point_plugins())


def get(name: str) -> Experiment:
    """The registered experiment ``name`` (unknown names: one-line error listing the valid ones)."""
    if name not in _REGISTRY:
        _discover()
    if name not in _REGISTRY:
        raise unknown_choice("experiment", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment by name, sorted."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


# -- plugins ------------------------------------------------------------------------------------------------
def entry_point_plugins() -> list[str]:
    """The modules installed packages declare in the ``plasticlab.plugins`` entry-point group."""
    from importlib.metadata import entry_points

    return [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]


def plugin_name(text: str) -> str:
    """How a plugin travels to workers: a ``.py`` path made absolute, a module name as it is."""
    return str(Path(text).resolve()) if text.endswith(".py") else text


def load_plugins(names: Iterable[str]) -> None:
    """Import each plugin once per process (a module name or a ``.py`` file); a missing one is one error."""
    for name in names:
        if name in _LOADED:
            continue
        try:
            if name.endswith(".py"):
                _load_file(Path(name))
            else:
                importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                raise PlasticlabError(
                    f"cannot import plugin {name!r}: no such module (is its folder on PYTHONPATH?)"
                ) from None
            raise
        _LOADED.add(name)


def _load_file(path: Path) -> None:
    if not path.is_file():
        raise PlasticlabError(f"cannot import plugin {str(path)!r}: no such file")
    module = f"plasticlab_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise PlasticlabError(f"cannot import plugin {str(path)!r}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)

"""Keep a run folder's finished chunks through a rename in their specs.

A chunk's identity is the hash of its spec (``store.chunk_hash``), so renaming a value a spec holds (an
engine preset, say) makes every finished chunk of a committed folder look new. ``rewrite_specs`` gives each
entry of OUT/manifest.json its rewritten spec and that spec's hash, renames its part file to match, and
re-tags the current grid and results.parquet; the parts' rows are not touched (a rename that changes what a
chunk computes needs a recomputation, not this). Entries whose hash is not the one their spec gives today
(chunks of an older ``code_version``) are left as they are: no run reuses them anyway.

    python -m plasticlab.sweeps.migrate curl-presets results/curl-speedup
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plasticlab.sweeps.store import Manifest, chunk_hash, grid_id

Spec = dict[str, Any]


def rewrite_specs(out: Path | str, change: Callable[[Spec], Spec], code_version: Any = 0) -> dict[str, str]:
    """Rewrite the specs of OUT's chunks with ``change`` (a copy in, the new spec out); -> {old: new hash}
    of the entries that changed. Idempotent: a second call finds nothing to change."""
    m = Manifest.load(out, must_exist=True)
    name, renamed = m.data["experiment"], {}
    for h, entry in list(m.chunks.items()):
        spec = entry.get("spec")
        if spec is None or chunk_hash(name, spec, code_version) != h:
            continue
        new_spec = change(copy.deepcopy(spec))
        if new_spec == spec:
            continue
        new = chunk_hash(name, new_spec, code_version)
        if m.part(h).exists():
            m.part(h).rename(m.part(new))
        entry["spec"], renamed[h] = new_spec, new
    if renamed:
        m.data["chunks"] = {renamed.get(h, h): entry for h, entry in m.chunks.items()}  # in their order
        old_grid = list(m.grid)
        m.data["grid"] = [renamed.get(h, h) for h in old_grid]
        results = m.data.get("results") or {}
        if results.get("grid") == grid_id(old_grid):
            results["grid"] = grid_id(m.grid)
        m.save()
    return renamed


def curl_presets(spec: Spec) -> Spec:
    """The curl engine's presets "curl", "dfa", "dfa_flip" (registered rules' names, of another meaning) by
    their names since: "gd_flip", "dfa_uniform", "dfa_uniform_flip" (in a spec's ``conditions``)."""
    from plasticlab.simulation.curl_rules import RENAMED

    if "conditions" in spec:
        spec["conditions"] = [[RENAMED.get(c[0], c[0]), *c[1:]] for c in spec["conditions"]]
    return spec


MIGRATIONS: dict[str, Callable[[Spec], Spec]] = {"curl-presets": curl_presets}


def main(argv: list[str]) -> int:
    """``MIGRATION FOLDER...``: apply a named migration to each folder, printing how many chunks changed."""
    if len(argv) < 2 or argv[0] not in MIGRATIONS:
        print(f"usage: python -m plasticlab.sweeps.migrate {{{','.join(MIGRATIONS)}}} FOLDER...", file=sys.stderr)
        return 2
    for out in argv[1:]:
        from plasticlab.study import get

        exp = get(Manifest.load(out, must_exist=True).data["experiment"])
        renamed = rewrite_specs(out, MIGRATIONS[argv[0]], exp.code_version)
        print(f"{out}: {len(renamed)} chunk specs rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

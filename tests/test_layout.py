"""The package layout stays acyclic: no plasticlab module imports one that (directly or not) imports it back,
counting every import statement in a file (inside functions and under TYPE_CHECKING too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "plasticlab").rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                graph[m] |= {resolve(a.name) for a in node.names if a.name.startswith("plasticlab")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                if base.startswith("plasticlab"):
                    graph[m] |= {
                        f"{base}.{a.name}" if f"{base}.{a.name}" in mods else resolve(base) for a in node.names
                    }
        graph[m] -= {m, ""}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_import_cycle_among_plasticlab_modules():
    cycle = _cycle(_graph(_modules()))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


MAX_FUNCTION_LINES = 60


def _long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function in src/ longer than ``limit`` lines (signature, docstring and body)."""
    out = []
    for f in sorted((SRC / "plasticlab").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{f.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_in_src_is_over_60_lines():
    assert not _long_functions(), "\n".join(_long_functions())


def test_the_length_check_finds_a_long_function():
    assert any("curl.py" in f for f in _long_functions(limit=40))  # e.g. simulate's long signature

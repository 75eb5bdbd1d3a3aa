"""The house's doors point one way: no import circle between our modules, and each room imports only the rooms below.

Every ``import`` statement counts, those inside functions included (a lazy import is still a dependency), so a
circle cannot hide behind a deferred import. The graph is read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("embodiments", "retarget", "sim_bridge", "worldmodel", "dexworld")

# Room → the rooms it may import (besides itself). Rooms are matched longest prefix first.
ALLOWED = {
    "embodiments": set(),
    "retarget": {"embodiments"},
    "sim_bridge": {"embodiments", "retarget"},
    "worldmodel.control": {"embodiments"},
    "worldmodel.editing": {"embodiments"},
    "worldmodel.wan": {"embodiments", "worldmodel.control"},
    "worldmodel.evaluation": {"embodiments", "worldmodel.control", "worldmodel.wan"},
    # training writes its sample videos with evaluation's video helpers; evaluation never imports training
    "worldmodel.training": {"embodiments", "worldmodel.control", "worldmodel.wan", "worldmodel.evaluation"},
    "worldmodel": {"embodiments", "worldmodel.control", "worldmodel.wan", "worldmodel.training",
                   "worldmodel.evaluation", "worldmodel.editing"},
    "dexworld": {"embodiments", "retarget", "sim_bridge", "worldmodel", "worldmodel.control", "worldmodel.wan",
                 "worldmodel.training", "worldmodel.evaluation", "worldmodel.editing"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports, resolved to the most specific module that exists."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def room(name: str) -> str:
    return max((r for r in ALLOWED if name == r or name.startswith(r + ".")), key=len)


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {}
    for name, path in mods.items():
        deps = imports_of(name, path, known)
        # `from pkg.sub import x` also runs pkg/__init__; that edge is implied by Python, not a choice of ours
        g[name] = {d for d in deps if not (name.startswith(d + ".") and (ROOT / d.replace(".", "/")).is_dir())}
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_graph_reader_sees_lazy_and_relative_imports(tmp_path):
    """The reader itself: a function-level import and a relative import both count."""
    pkg = ROOT / "worldmodel" / "wan" / "pipeline.py"
    deps = imports_of("worldmodel.wan.pipeline", pkg, set(modules()))
    assert "worldmodel.wan.adapter" in deps  # imported at module level
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_rooms_import_only_rooms_below():
    bad = []
    for name, deps in graph().items():
        here = room(name)
        for d in deps:
            there = room(d)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{name} → {d}")
    assert not bad, "imports against the one-way doors:\n" + "\n".join(sorted(bad))

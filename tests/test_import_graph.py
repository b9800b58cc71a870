"""The floors of imori's own modules: no import cycle, no import from a lower layer up.

Walks core, worker, cli and dashboard (core/records/migrations left out) and counts every
import, at module level or inside a function. Importing ``a.b.c`` also imports the
``__init__`` of ``a.b`` (Python runs it first), unless the importer lives inside ``a.b``
already; ``from a.b import X`` lands in ``a/b/X.py`` when that exists, else in ``a/b``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKS = ("core", "worker", "cli", "dashboard")
# A layer may import only the layers below it: core < worker < dashboard < cli.
FORBIDDEN = {"core": {"worker", "cli", "dashboard"}, "worker": {"cli", "dashboard"}, "dashboard": {"cli"}}


def module_files() -> dict[str, Path]:
    """Every module of imori's own packages, by dotted name (a package by its own name)."""
    files = {}
    for pack in PACKS:
        for path in sorted((ROOT / pack).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "migrations" in rel.parts or "__pycache__" in rel.parts:
                continue
            name = ".".join(rel.with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    return files


def _landing(name: str, files: dict[str, Path]) -> str | None:
    """The module a dotted name lands in: the longest known prefix."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in files:
            return ".".join(parts[:i])
    return None


def _packages_of(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_edges(files: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of imori's own modules, the packages' ``__init__`` included."""
    edges: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        own_packages = set(_packages_of(mod)) | ({mod} if is_pkg else set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                targets = subs or [base]
            else:
                continue
            for target in targets:
                if target.split(".")[0] not in PACKS:
                    continue
                hit = _landing(target, files)
                if hit is None:
                    continue
                for dep in [*_packages_of(hit), hit]:
                    if dep != mod and dep not in own_packages and dep in files:
                        edges[mod].add(dep)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def layer_breaks(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, targets in edges.items()
        for b in targets
        if b.split(".")[0] in FORBIDDEN.get(a.split(".")[0], ())
    )


def test_the_walk_sees_every_kind_of_import():
    files = module_files()
    edges = import_edges(files)
    assert "core.data" in files and "core.data.folders" in files
    # `from core.data.folders import X` inside core counts core/data/__init__.py too
    assert any("core.data" in targets for mod, targets in edges.items() if not mod.startswith("core.data"))


def test_no_import_cycles():
    found = cycles(import_edges(module_files()))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    breaks = layer_breaks(import_edges(module_files()))
    assert not breaks, "layer breaks:\n" + "\n".join(breaks)

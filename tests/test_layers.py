"""The package's import layering (docs/ARCHITECTURE.md, "Packages"): a package imports only
packages above it in the order below, and no two modules import each other (not even
lazily, inside a function) nor through a chain of modules. Read from the source with ``ast``, so lazy imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1] / "accelsim"

#: Top to bottom: a stage may import only stages before it (docs/ARCHITECTURE.md).
ORDER = ("errors", "units", "_io", "_version", "config", "presets", "hw", "workload",
         "precision", "packing", "kernels", "quant", "sim", "system", "alloc", "theory", "fidelity",
         "sweep", "plot", "report", "cli")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the accelsim modules ``path`` imports (anywhere in the file)."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("accelsim"):
                for a in node.names:
                    full = f"{target}.{a.name}"
                    out.add(full if _exists(full) else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("accelsim"))
    out.discard(mod)
    return out


def _exists(name: str) -> bool:
    p = ROOT.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


FILES = sorted(p for p in ROOT.rglob("*.py") if "presets" not in p.parts[len(ROOT.parts):][:1])
GRAPH = {_module(p): _imports(p) for p in FILES}


def _stage(mod: str) -> str:
    """``accelsim.sim.core`` -> ``sim``; the top-level package itself has none."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("mod", sorted(m for m in GRAPH if _stage(m)))
def test_imports_only_stages_above(mod):
    here = _stage(mod)
    up = [t for t in GRAPH[mod] if _stage(t) in ORDER
          and ORDER.index(_stage(t)) > ORDER.index(here)]
    assert not up, f"{mod} imports a stage below it: {sorted(up)}"


def test_no_stage_is_missing_from_the_order():
    stages = {_stage(m) for m in GRAPH} - {""}
    assert stages <= set(ORDER), sorted(stages - set(ORDER))


def test_no_import_circles_between_modules():
    g = nx.DiGraph()
    for mod, targets in GRAPH.items():
        for t in targets:
            # a package's __init__ re-exports its modules: an edge into a package counts
            # as an edge into the package only, not a cycle through its children
            if t in GRAPH and t != mod and not mod.startswith(t + "."):
                g.add_edge(mod, t)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import circles: {cycles}"

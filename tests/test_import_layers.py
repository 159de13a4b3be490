"""Imports run downward: every import between the package's parts, read from the source (module
level and inside functions alike), goes from a higher layer to a lower one or stays within a
layer, and the parts import each other without a cycle.

LAYERS is the one place the layering is written down (docs/architecture.md draws the same).
A part is a subpackage (`cli`, `engine`, ...) or a top-level module (`atomic`, ...); imports
within one part are not checked here. Nothing is imported: the test reads the source with ast.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

import mergedna_cli

PACKAGE = Path(mergedna_cli.__file__).resolve().parent

# Top to bottom. A part may import any part of a lower layer and, without a cycle, a part of its
# own layer (finetune/predictor.py builds its encoder's backend with engine/load.py).
LAYERS: list[set[str]] = [
    {"__main__"},                                    # python -m mergedna_cli
    {"cli"},                                         # Typer commands: options -> a request
    {"pipelines"},                                   # one run(request) per command: the composition
    {"engine", "training", "finetune"},              # inference, pre-training, fine-tuning
    {"io"},                                          # file formats
    {"model", "model_dirs"},                         # the network, its config and files; --model
    {"atomic", "alphabet", "errors", "__init__"},    # __init__: mergedna_cli itself
]
LAYER_OF = {part: depth for depth, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def imported_modules(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every mergedna_cli import in the file: `import
    mergedna_cli.x`, `from mergedna_cli.x import y`, `from ..x import y`, `from . import y`
    (y a module: that module; otherwise the package it comes from), at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names
                      if alias.name.split(".")[0] == "mergedna_cli"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "mergedna_cli":
                source = node.module
            else:
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else source))
    return found


def part_of(module: str) -> str:
    """mergedna_cli.engine.load -> engine; mergedna_cli.atomic -> atomic; mergedna_cli -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> where: 'path:line imports module'."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = part_of(_module_name(path))
        for line, module in imported_modules(path):
            target = part_of(module)
            if target != source:
                edges.setdefault((source, target), []).append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return edges


def test_every_part_has_a_layer():
    parts = {part_of(_module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert parts - set(LAYER_OF) == set(), "add the new part to LAYERS"


def test_imports_run_downward():
    upward = [where for (source, target), places in import_edges().items()
              if LAYER_OF.get(target, -1) < LAYER_OF.get(source, -1) for where in places]
    assert upward == [], "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycle_between_parts():
    edges = import_edges()
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    cycle: list[str] = []

    def visit(part: str, path: list[str], done: set[str]) -> bool:
        if part in path:
            cycle.extend(path[path.index(part):] + [part])
            return True
        if part in done:
            return False
        done.add(part)
        return any(visit(nxt, path + [part], done) for nxt in sorted(graph.get(part, ())))

    done: set[str] = set()
    found = any(visit(part, [], done) for part in sorted(graph))
    assert not found, "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(
        where for a, b in itertools.pairwise(cycle) for where in edges[(a, b)])


@pytest.mark.parametrize("source, expected", [
    ("from ..engine.load import make_backend\n", "mergedna_cli.engine.load"),
    ("from .. import __version__\n", "mergedna_cli"),
    ("from ..io import regions\n", "mergedna_cli.io.regions"),
    ("def f():\n    import mergedna_cli.model.files\n", "mergedna_cli.model.files"),
    ("def f():\n    from mergedna_cli.pipelines import tracks\n", "mergedna_cli.pipelines.tracks"),
])
def test_the_walk_sees_every_spelling(source, expected):
    """The walk resolves relative imports, `from package import module` and imports inside
    functions (as a file in finetune/ would write them)."""
    path = PACKAGE / "finetune" / "predictor.py"
    assert [module for _, module in imported_modules(path, source)] == [expected]

"""Layers don't leak, and nothing imports in a circle.

The layers, bottom to top (docs/design.md draws them):

    ringsync/           the library the node and the console share
    node/   console/    the campus node; the operator TUI (neither knows the other)
    ringsync/commands/  the commands: may use everything

Every import counts, including those inside function bodies and under
``if TYPE_CHECKING:``: an import hidden in a function is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ringsync", "node", "console")
GENERATED = "ringsync.v1"

# layer -> (which modules belong to it, prefixes it must never import)
LIBRARY_FORBIDDEN = ("node", "console", "ringsync.commands", "textual")
RULES: dict[str, tuple[str, ...]] = {
    "library": LIBRARY_FORBIDDEN,
    "node": ("console", "textual", "ringsync.commands"),
    "console": ("node", "psycopg", "ringsync.commands"),
}


def layer_of(module: str) -> str:
    if module.startswith("ringsync.commands"):
        return "commands"
    if module.split(".")[0] == "ringsync":
        return "library"
    return module.split(".")[0]


def module_files(root: Path) -> dict[str, Path]:
    """Every first-party module under ``root`` by dotted name (generated code aside)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name == GENERATED or name.startswith(GENERATED + "."):
                continue
            found[name] = path
    return found


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported dotted name, line) for every import in the file, at any depth;
    relative imports resolved against ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for n in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(n, ast.Import):
            for a in n.names:
                yield a.name, n.lineno
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base_parts = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                base = ".".join(base_parts + ([n.module] if n.module else []))
            else:
                base = n.module or ""
            yield base, n.lineno
            for a in n.names:  # `from pkg import module` names a module too
                yield f"{base}.{a.name}", n.lineno


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {first-party module it imports: line of the first such import}."""
    files = module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges: dict[str, int] = {}
        for name, line in imports_of(module, path):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.setdefault(name, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(root: Path) -> list[str]:
    """Every import that crosses a layer the wrong way, as 'path:line imports name'."""
    files = module_files(root)
    out = []
    for module, path in files.items():
        forbidden = RULES.get(layer_of(module), ())
        for name, line in imports_of(module, path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(root)}:{line} imports {name}")
    return sorted(set(out))


def test_no_layer_imports_what_it_must_not() -> None:
    assert violations(ROOT) == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph(ROOT)) == []


@pytest.mark.parametrize("layer", sorted(RULES))
def test_every_layer_has_modules(layer: str) -> None:
    """The rules above check something: every layer they name has modules."""
    assert any(layer_of(m) == layer for m in module_files(ROOT))


# -- the checks themselves can fail ----------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


def test_a_cycle_through_a_function_body_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "ringsync/__init__.py": "",
        "ringsync/a.py": "from ringsync.b import x\n",
        "ringsync/b.py": "def f():\n    from ringsync import a\n",
        "ringsync/c.py": "from . import b\n",
    })
    assert cycles(import_graph(root)) == [["ringsync.a", "ringsync.b"]]


def test_a_cycle_under_type_checking_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "node/__init__.py": "",
        "node/p/__init__.py": "",
        "node/p/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from .b import B\n",
        "node/p/b.py": "from node.p.a import A\n",
    })
    assert cycles(import_graph(root)) == [["node.p.a", "node.p.b"]]


def test_a_library_module_importing_a_command_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "ringsync/__init__.py": "",
        "ringsync/client.py": "def f():\n    from ringsync.commands.ctl import status\n",
        "ringsync/commands/__init__.py": "import node.main\nimport console.app\n",
        "console/app.py": "import psycopg\n",
    })
    assert violations(root) == [
        "console/app.py:1 imports psycopg",
        "ringsync/client.py:2 imports ringsync.commands.ctl",
        "ringsync/client.py:2 imports ringsync.commands.ctl.status",
    ]

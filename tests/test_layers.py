"""The import graph follows the data flow: no cycle, and no arrow from a lower layer to a higher one.

The layers, lowest first, are the order `LAYERS` lists (docs/architecture.md draws them). A module
may import its own layer and the ones below it; lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import syndicator

PACKAGE = Path(syndicator.__file__).parent

# Lowest first. Each entry is a subpackage, or a top-level module of the foundation.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "i18n", "files", "typography", "addresses", "folding"},  # foundation, no I/O
    {"parsing"},  # item files
    {"taxonomy"},  # terms, names, territoires, matching
    {"config"},  # config.yaml, the Subscriber value
    {"templating"},  # Jinja environment shared by feeds, digests and pages
    {"mail"},  # messages and transports, shared by digests and the web
    {"db"},  # every table and its SQL
    {"privacy"},  # the RGPD, over the store
    {"ingest"},  # item files → store
    {"feeds"},  # store → feeds
    {"bounces"},  # bounce mailbox → store
    {"digests"},  # store → selection → rendering → ledger → transport
    {"web"},  # the pages of `syndicator serve`
    {"service"},  # cycle, schedule, daemon
    {"cli", "__main__"},  # the command line
]


def module_name(path: Path) -> str:
    return ".".join(("syndicator", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
        ".__init__"
    )


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def imports(path: Path) -> Iterator[str]:
    """Every syndicator module `path` imports, at the top or inside a function."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("syndicator"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base])
            if not base.startswith("syndicator"):
                continue
            for alias in node.names:
                candidate = f"{base.rstrip('.')}.{alias.name}"
                yield candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() else base


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        edges[module_name(path)] = {m for m in imports(path) if m != "syndicator"}
    return edges


def test_every_module_is_in_a_layer() -> None:
    for module in graph():
        layer(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in sorted(targets)
        if layer(target) > layer(source)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_an_upward_arrow() -> None:
    """Guard of the guard: a known downward import is seen, so an upward one would be too."""
    assert "syndicator.db.store" in graph()["syndicator.digests.run"]
    assert layer("syndicator.db.store") < layer("syndicator.digests.run")

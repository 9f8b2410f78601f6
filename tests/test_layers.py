"""Arrows only point down: every import inside `aiquery/` goes to the same layer or one below, and none closes a cycle.

The layers, from the ground up (docs/architecture.md explains each one's job):

    errors, pricing, config, config_numbers, redis_url, version, liveness   (the ground)
    gateway/                                                                 (the emulator, apart: ground only)
    apis/
    store/, usage/, ai_functions/, provider_batches/
    engine/
    coordinator/
    spark/
    jobs/, functions.py, connect/, connect_server.py
    the package root (aiquery/__init__.py)
    demo/, cli.py, __main__.py

Every import counts, at module level or inside a function: an import moved into a function still runs, and only
hides the arrow from a reader. Imports under `if TYPE_CHECKING:` count too: a type named from a layer above is a
dependency on it all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aiquery"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "pricing", "config", "config_numbers", "redis_url", "version", "liveness"),
    ("apis",),
    ("store", "usage", "ai_functions", "provider_batches"),
    ("engine",),
    ("coordinator",),
    ("spark",),
    ("jobs", "functions", "connect", "connect_server"),
    ("__init__",),
    ("demo", "cli", "__main__"),
)
APART = "gateway"
"""The emulator stands beside the package: it may use the ground, and only the top layer starts it."""

RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
TOP = len(LAYERS) - 1


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `name` names or lies in (an imported function resolves to its module)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_names(node: ast.AST, source: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = source.split(".")
            # A relative import counts from the module's package: a package's __init__ is its own package.
            drop = node.level - 1 if is_package else node.level
            base = base[: len(base) - drop] if drop else base
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        for alias in node.names:
            yield f"{stem}.{alias.name}"
            yield stem


def arrows() -> list[Arrow]:
    known = modules()
    found: list[Arrow] = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = {resolve(name, known) for name in imported_names(node, source, is_package)}
            # `from aiquery.x import y` names both aiquery.x and, where y is a module, aiquery.x.y: keep the deepest.
            deepest = {t for t in targets if t and not any(o != t and o.startswith(t + ".") for o in targets if o)}
            found.extend(Arrow(source, target, node.lineno) for target in sorted(deepest) if target != source)
    return found


def part_of(module: str) -> str:
    """The top-level part of the package a module belongs to ("__init__" for the root itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def rank_of(module: str) -> int | None:
    return RANK.get(part_of(module))


def test_every_part_of_the_package_has_a_layer():
    parts = {part_of(module) for module in modules()}
    unplaced = sorted(parts - set(RANK) - {APART})
    assert not unplaced, f"give these parts of aiquery a layer here and in docs/architecture.md: {unplaced}"


def test_arrows_only_point_down():
    upward = []
    for arrow in arrows():
        source, target = part_of(arrow.source), part_of(arrow.target)
        if source == APART or target == APART:
            if source == APART and target != APART and rank_of(arrow.target) != 0:
                upward.append(f"{arrow}: the emulator may use only the ground")
            if target == APART and source != APART and rank_of(arrow.source) != TOP:
                upward.append(f"{arrow}: only the top layer (demo, cli) starts the emulator")
            continue
        source_rank, target_rank = rank_of(arrow.source), rank_of(arrow.target)
        if source_rank is None or target_rank is None:
            continue  # an unplaced part is reported by the test above
        if target_rank > source_rank:
            upward.append(f"{arrow}: {target} is above {source}")
    assert not upward, "imports that climb:\n" + "\n".join(upward)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in modules()}
    for arrow in arrows():
        graph[arrow.source].add(arrow.target)
    return graph


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "modules that import each other, directly or around a loop:\n" + "\n".join(
        " <-> ".join(group) for group in found
    )


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_the_cycle_finder_finds_loops(graph, expected):
    assert sorted(cycles(graph)) == expected


def test_the_arrow_reader_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "aiquery"
    (package / "engine").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "engine" / "__init__.py").write_text("from .core import run\n")
    (package / "engine" / "core.py").write_text("def run():\n    from aiquery.spark import udf\n")
    (package / "spark").mkdir()
    (package / "spark" / "__init__.py").write_text("")
    (package / "spark" / "udf.py").write_text("from aiquery.engine.core import run\nfrom .. import errors\n")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    found = {(a.source, a.target) for a in arrows()}
    assert ("aiquery.engine.core", "aiquery.spark.udf") in found
    assert ("aiquery.engine", "aiquery.engine.core") in found
    assert ("aiquery.spark.udf", "aiquery.errors") in found
    assert cycles(import_graph()) == [["aiquery.engine.core", "aiquery.spark.udf"]]

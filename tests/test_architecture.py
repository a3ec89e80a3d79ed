"""The house stays in wings: no import cycle, no import up a layer, plugins import only the ground floor.

The import graph is read with `ast` from the source (every `import` counts, including the ones inside
functions and under `TYPE_CHECKING`: a lazy or type-only import is still a dependency of the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "daemon", "brokers", "notifiers", "strategies")

# Lowest first. A module may import modules on its own floor or below, never above.
FLOORS: list[tuple[str, ...]] = [
    ("config", "daemon.domain", "daemon.money", "daemon.shapes", "daemon.supervision", "daemon.charts",
     "daemon.identity", "daemon.atr", "daemon.command_table"),
    ("brokers", "notifiers", "strategies"),
    ("daemon.store", "daemon.risk", "daemon.calendar", "daemon.events", "daemon.metrics", "daemon.scheduler",
     "daemon.ownership"),
    ("daemon.engine", "daemon.workers", "daemon.execution", "daemon.planner", "daemon.ladder", "daemon.exit_guard",
     "daemon.exit_follow", "daemon.reconcile", "daemon.queries", "daemon.history", "daemon.intake", "daemon.fanout",
     "daemon.fanout_report", "daemon.copier", "daemon.handover", "daemon.cluster", "daemon.links",
     "daemon.managed_exits", "daemon.entry_hooks", "daemon.cancelling"),
    ("daemon.web", "daemon.chat", "daemon.strategy"),
    ("daemon.app", "daemon.site", "daemon.offline"),
    ("daemon.cli",),
]
# Plugins are added without touching the engine: they see the ground floor and their own package only.
PLUGINS = ("brokers", "notifiers", "strategies")
# Wings on one floor are independent of each other (app wires them together).
SIBLING_WINGS = ("daemon.web", "daemon.chat", "daemon.strategy")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # Alembic scripts are loaded by path, not imported by the product
            found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Product modules that `name` imports (a `from pkg import mod` names the module itself)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    known = set(modules)
    graph = {name: imports_of(path, name, known) for name, path in modules.items()}
    # A top-level package's __init__ only names the package; it belongs to no floor of its own.
    for package in PACKAGES:
        assert not graph.pop(package, set()), f"{package}/__init__.py should import nothing"
    for targets in graph.values():
        targets.difference_update(PACKAGES)
    return graph


def floor_of(module: str) -> tuple[int, str]:
    best: tuple[int, str] | None = None
    for level, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (level, prefix)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS in {Path(__file__).name}")
    return best


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    assert find_cycles(import_graph()) == []


def test_no_import_runs_up_a_floor() -> None:
    upward = []
    for module, targets in sorted(import_graph().items()):
        here, _ = floor_of(module)
        for target in sorted(targets):
            there, _ = floor_of(target)
            if there > here:
                upward.append(f"{module} (floor {here}) imports {target} (floor {there})")
    assert upward == []


def test_plugins_import_only_the_ground_floor_and_their_own_package() -> None:
    strays = []
    for module, targets in sorted(import_graph().items()):
        plugin = module.split(".")[0]
        if plugin not in PLUGINS:
            continue
        for target in sorted(targets):
            if target.split(".")[0] != plugin and floor_of(target)[0] != 0:
                strays.append(f"{module} imports {target}")
    assert strays == []


def test_wings_on_one_floor_do_not_import_each_other() -> None:
    crossings = []
    for module, targets in sorted(import_graph().items()):
        _, wing = floor_of(module)
        if wing not in SIBLING_WINGS:
            continue
        for target in sorted(targets):
            _, other = floor_of(target)
            if other in SIBLING_WINGS and other != wing:
                crossings.append(f"{module} imports {target}")
    assert crossings == []


@pytest.mark.parametrize("package", ["daemon", "brokers"])
def test_files_stay_small_and_say_their_job(package: str) -> None:
    too_long, undocumented = [], []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        if ast.get_docstring(ast.parse(text)) is None:
            undocumented.append(str(path.relative_to(ROOT)))
    assert too_long == []
    assert undocumented == []


def test_the_walker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: a planted cycle and a planted upward import are both found."""
    graph = {"daemon.engine": {"daemon.risk.monitor"}, "daemon.risk.monitor": {"daemon.engine"}}
    assert find_cycles(graph) == [["daemon.engine", "daemon.risk.monitor"]]
    assert floor_of("daemon.risk.monitor")[0] < floor_of("daemon.engine")[0]
    assert floor_of("daemon.cli.main") == (6, "daemon.cli")

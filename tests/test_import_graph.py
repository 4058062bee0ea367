"""No import circles in erv_plugins: the static import graph has no cycle, and every module
imports alone in a fresh interpreter (a cycle that only bites in some import order shows
up here as an ImportError of a partly initialised module)."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import erv_plugins

PACKAGE = Path(erv_plugins.__file__).parent


def module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The erv_plugins modules ``name`` imports, at module level or inside functions
    (a function-level import is a circle put off, not removed). ``if TYPE_CHECKING:``
    blocks never run and are left out; a module's own ancestor packages too (Python
    imports them first whatever the module says)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            subs = {f"{module}.{alias.name}" for alias in node.names} & known
            found.update(subs or {module})
        stack.extend(ast.iter_child_nodes(node))
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in known and m != name and m not in ancestors}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_find_cycle_reports_the_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_static_import_graph_has_no_cycle() -> None:
    modules = module_names()
    known = set(modules)
    graph = {name: imports_of(name, path, known) for name, path in modules.items()}
    # The graph is read, not empty: the stage runner imports the recipe and the plugins.
    assert {"erv_plugins.recipe", "erv_plugins.plugins"} <= graph["erv_plugins.stages"]
    assert find_cycle(graph) is None


def test_every_module_imports_alone() -> None:
    names = [n for n in module_names() if n.split(".")[-1] != "__main__"]
    # Import everything once, then forget erv_plugins and fork a child per module: the
    # third-party libraries stay loaded (fast), erv_plugins loads afresh from the one
    # module each child imports. The native module stays: an extension initialises once.
    saved = dict(sys.modules)
    for name in names:
        __import__(name)
    fresh = {m: v for m, v in sys.modules.items()
             if m.split(".")[0] != "erv_plugins" or "_native" in m}
    failures: dict[str, int] = {}
    for name in names:
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                sys.modules.clear()
                sys.modules.update(fresh)
                __import__(name)
            except BaseException as exc:  # noqa: BLE001 - reported by the exit status
                print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failures[name] = os.waitstatus_to_exitcode(status)
    sys.modules.update(saved)
    assert failures == {}

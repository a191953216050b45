"""The package's shape: no import cycles (function-level imports included), a leaf constants module, and tests
that use only public names and share helpers through conftest.py / utils.py."""

import ast
import os

import pytest

from pmg_aft import TRAINERS

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "pmg_aft")
TESTS = os.path.dirname(__file__)


def module_name(path: str) -> str:
    relative = os.path.relpath(path, os.path.join(PACKAGE, "..")).removesuffix(".py").replace(os.sep, ".")
    return relative.removesuffix(".__init__")


def imported_modules(path: str, known: set[str]) -> set[str]:
    """Every pmg_aft module `path` imports, at any depth of the file (function-level imports too)."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            source = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            candidates = [source] + [f"{source}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [os.path.join(root, f) for root, _, files in os.walk(PACKAGE) for f in files if f.endswith(".py")]
    known = {module_name(p) for p in paths}
    graph = {module_name(p): imported_modules(p, known) for p in paths}
    # Importing `a.b.c` from outside `a.b` runs `a/b/__init__.py` first (inside it, the package is already running).
    for name, targets in graph.items():
        for target in list(targets):
            parts = target.split(".")
            parents = {".".join(parts[:i]) for i in range(2, len(parts))}
            targets |= {p for p in parents if name != p and not name.startswith(p + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if state.get(target) is None and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20 and "pmg_aft.trainers.base_trainer" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # The finder does find a cycle when there is one.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_constants_is_a_leaf_and_evaluation_does_not_know_trainers():
    graph = import_graph()
    assert graph["pmg_aft.constants"] == set() and graph["pmg_aft.errors"] == set()
    below_trainers = ("pmg_aft.evaluation", "pmg_aft.data", "pmg_aft.hub", "pmg_aft.cards", "pmg_aft.methods",
                      "pmg_aft.attack", "pmg_aft.pixels", "pmg_aft.parsing", "pmg_aft.zeroshot")  # fmt: skip
    for name, targets in graph.items():
        if name.startswith(below_trainers):
            assert not any(t.startswith("pmg_aft.trainers") for t in targets), name
    # The method-specific files depend on the shared ones, never on each other; a method that is another's
    # published extension (Comp-TGA is TGA-ZSR's journal version: the same step on another attention map) extends
    # that method's pair instead of copying it.
    extends = {f"pmg_aft.trainers.{m}": f"pmg_aft.trainers.{t.method_info.extends}"
               for m, t in TRAINERS.items() if t.method_info.extends}  # fmt: skip
    methods = [n for n in graph if n.startswith("pmg_aft.trainers.") and n.endswith(("_config", "_trainer"))]
    for name in methods:
        own = name.rsplit("_", 1)[0]
        allowed = (own, extends[own]) if own in extends else (own,)
        others = [t for t in graph[name] if t in methods and not t.startswith(allowed) and "base_" not in t]
        assert not others, (name, others)


def python_files_in_tests():
    return sorted(os.path.join(root, f) for root, _, files in os.walk(TESTS) for f in files if f.endswith(".py"))


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", python_files_in_tests(), ids=lambda p: os.path.relpath(p, TESTS))
def test_tests_use_public_names_and_import_no_test_module(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        where = (os.path.relpath(path, TESTS), getattr(node, "lineno", None))
        if isinstance(node, ast.Attribute):
            assert not private(node.attr), (*where, node.attr)
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            assert not module.split(".")[-1].startswith(("test_", "conftest")), (*where, module)
            assert not any(private(alias.name) for alias in node.names), (*where, [a.name for a in node.names])
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr"):
            name = node.args[1] if len(node.args) > 1 else None
            assert not (isinstance(name, ast.Constant) and isinstance(name.value, str) and private(name.value)), where

"""The code's shape: no import cycles inside offbench, no private helpers imported across modules,
and a command line that is a thin package of command groups (issue 13, item 8)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "offbench"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> tuple[set[str], list[tuple[str, str]]]:
    """The offbench modules ``path`` imports (at any depth, outside ``if TYPE_CHECKING``) and the
    private names it imports from them."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for node in ast.walk(block)}
    edges, private = set(), []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            edges.update(m for m in submodules if m in modules)
            if node.module in modules and not all(m in modules for m in submodules):
                edges.add(node.module)
            private += [(node.module, a.name) for a in node.names
                        if node.module.startswith("offbench") and a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Import):
            edges.update(a.name for a in node.names if a.name in modules)
    return edges, private


def _graph():
    modules = _modules()
    graph, private = {}, {}
    for name, path in modules.items():
        edges, names = _imports(path, modules)
        graph[name] = edges - {name}
        private[name] = names
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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


def test_no_import_cycles():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_helpers_imported_across_modules():
    _, private = _graph()
    assert {m: names for m, names in private.items() if names} == {}


def test_cli_is_a_package_of_thin_command_groups():
    from offbench import cli

    assert Path(cli.__file__).name == "__init__.py"
    groups = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem not in ("__init__", "__main__", "common"))
    assert groups == sorted(g.__name__.rsplit(".", 1)[1] for g in cli.GROUPS)
    graph, _ = _graph()
    for name, edges in graph.items():  # the library never reaches up into the command line
        if not name.startswith("offbench.cli"):
            assert not any(e.startswith("offbench.cli") for e in edges), name
    for path in (PACKAGE / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) < 300, f"{path.name}: a command group parses and calls"

"""The package's import graph, read with ast: no circle but the CLI's registration, and no
module of ``frappe_imagekit/`` importing another module's private names."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "frappe_imagekit"
# cli/main.py imports the command modules (in _load_commands) that import its `command`
# decorator: the one circle by design (issue 23).
REGISTRATION = "frappe_imagekit.cli.main"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> Iterator[tuple[str, str]]:
    """(imported module, imported name or "") for every import of the package's own modules,
    at any depth (TYPE_CHECKING and in-function imports count: they are edges too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, "") for alias in node.names if alias.name.startswith("frappe_imagekit"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            if base.startswith("frappe_imagekit"):
                yield from ((base, alias.name) for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, imported in _imports(name, path):
            submodule = f"{target}.{imported}"
            graph[name].add(submodule if submodule in modules else target)
        graph[name].discard(name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative enough here)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_reader_sees_the_build_modules_and_their_edges() -> None:
    graph = _graph()
    assert {"frappe_imagekit.build.plan", "frappe_imagekit.build.tiers"} <= set(graph)
    assert "frappe_imagekit.build.tiers" in graph["frappe_imagekit.build.exact"]
    assert "frappe_imagekit.build.plan" in graph["frappe_imagekit.build.execute"]
    # it would see a circle: a made-up edge back from tiers to plan closes one
    graph["frappe_imagekit.build.tiers"].add("frappe_imagekit.build.plan")
    assert any("frappe_imagekit.build.tiers" in circle for circle in _circles(graph))


def test_no_import_circle_but_the_cli_registration() -> None:
    graph = _graph()
    without_registration = {name: set(edges) for name, edges in graph.items() if name != REGISTRATION}
    assert _circles(without_registration) == []
    assert all(REGISTRATION in circle for circle in _circles(graph))


def test_no_build_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    private = [
        f"{name} imports {imported} from {target}"
        for name, path in modules.items()
        if name.startswith("frappe_imagekit.build")
        for target, imported in _imports(name, path)
        if imported.startswith("_") and target != name
    ]
    assert private == []


def _private_imports() -> list[str]:
    return [
        f"{name} imports {imported} from {target}"
        for name, path in _modules().items()
        for target, imported in _imports(name, path)
        if imported.startswith("_") and not imported.startswith("__") and target != name
    ]


def test_no_module_imports_another_modules_private_names() -> None:
    assert _private_imports() == []


def test_the_private_import_check_sees_one(tmp_path: Path) -> None:
    """A made-up module importing ``_x`` from another is seen (the check can fail)."""
    source = "from frappe_imagekit.deploy.steps import _made_up\nfrom frappe_imagekit.deploy import _y\n"
    path = tmp_path / "made.py"
    path.write_text(source)
    found = [imported for _, imported in _imports("frappe_imagekit.made", path)]
    assert found == ["_made_up", "_y"]

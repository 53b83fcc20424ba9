"""The import graph of dazibao.node and dazibao.protocol, read from the sources with ``ast``.

Every ``import`` counts, at module level, inside functions and under ``TYPE_CHECKING``: an
import hidden in a function is still a dependency, and hiding one is the usual way a cycle
is papered over.  Two rules hold:

- no module of node/ takes part in an import cycle (the shared helpers go to a module both
  sides import, such as node/cli_common.py or node/web/base.py);
- protocol/ never imports node/ (the pure core knows nothing of its shell).

And one path writes: in node/, only node/authoring.py signs posts, and both the command line
and the web UI reach it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"dazibao.node": ROOT / "node", "dazibao.protocol": ROOT / "protocol"}


def module_files() -> dict[str, Path]:
    """Every module of both packages, by its installed name (``dazibao.node.web.app``)."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package a relative import starts from: the module's own for a package's __init__.
    package = name.split(".") if _is_package(path) else name.split(".")[:-1]
    found: set[str] = set()

    def add(target: str) -> None:
        # The longest known prefix: ``a.b.c`` names a module, or a name inside module ``a.b``.
        parts = target.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in known:
                found.add(candidate)
                return
            parts.pop()

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                # ``from . import views`` imports the module ``views``; ``from .app import UI``
                # imports ``app`` (UI is a name in it): add() keeps the longest module.
                add(f"{stem}.{alias.name}")
    found.discard(name)  # a module naming itself (e.g. in a docstring example) is no edge
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # An explicit stack of (module, its remaining successors): no recursion limit to meet.
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in graph:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


# --- the reader and the cycle finder themselves ------------------------------------------------


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert sorted(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}})) == [["a", "b", "c"],
                                                                                          ["d", "e"]]
    # A long chain: no recursion limit.
    chain = {str(i): {str(i + 1)} for i in range(5_000)}
    chain["5000"] = {"0"}
    assert len(cycles(chain)) == 1 and len(cycles(chain)[0]) == 5_001


def test_the_reader_resolves_relative_absolute_and_function_level_imports(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import thing\n")
    (pkg / "a.py").write_text("import typing\nfrom . import b\n\ndef f():\n    from .sub.c import x\n")
    (pkg / "b.py").write_text("from dazibao.protocol import posts\n")
    known = {"p", "p.a", "p.b", "p.sub", "p.sub.c", "dazibao.protocol", "dazibao.protocol.posts"}
    assert imports_of("p", pkg / "__init__.py", known) == {"p.a"}
    assert imports_of("p.a", pkg / "a.py", known) == {"p.b", "p.sub.c"}
    assert imports_of("p.b", pkg / "b.py", known) == {"dazibao.protocol.posts"}


def test_the_graph_sees_the_known_edges(graph):
    # If these were missed, an empty graph would pass every test below.
    assert "dazibao.node.cli_common" in graph["dazibao.node.cli"]
    assert "dazibao.node.cli_mirror" in graph["dazibao.node.cli"]
    assert "dazibao.node.web.base" in graph["dazibao.node.web.app"]
    assert "dazibao.protocol.posts" in graph["dazibao.node.authoring"]
    assert len(graph) > 40


# --- the rules -----------------------------------------------------------------------------------


def test_no_import_cycle_in_node(graph):
    found = [c for c in cycles(graph) if any(m.startswith("dazibao.node") for m in c)]
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_protocol_never_imports_node(graph):
    bad = {name: sorted(t for t in targets if t.startswith("dazibao.node"))
           for name, targets in graph.items() if name.startswith("dazibao.protocol")}
    assert {name: targets for name, targets in bad.items() if targets} == {}


def test_only_authoring_signs_posts_and_both_front_ends_use_it(graph):
    signers = []
    for name, path in module_files().items():
        if not name.startswith("dazibao.node") or name == "dazibao.node.authoring":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute | ast.Name) and (getattr(node, "attr", None) == "create_post"
                                                               or getattr(node, "id", None) == "create_post"):
                signers.append(name)
    assert signers == [], f"posts are signed outside node/authoring.py in {sorted(set(signers))}"
    assert "dazibao.node.authoring" in graph["dazibao.node.cli"]
    assert "dazibao.node.authoring" in graph["dazibao.node.web.pages.compose"]
    assert "dazibao.node.authoring" in graph["dazibao.node.web.pages.pseudonyms"]

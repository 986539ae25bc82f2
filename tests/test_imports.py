"""The import graph: ``ensemble/`` is the ground floor, and no two modules import each other in a circle.

Every ``import`` / ``from ... import`` of a project module is counted, at module top or inside a
function alike: a lazy import is still a dependency. The one exception is the body of
``if __name__ == "__main__":``: it runs only when the file is the command (module ``__main__``, not
the importable module), which is how ``python -m ensemble.zoo`` reaches ``ensemble.zoo_cli``. ``members/`` may use ``ensemble/``; ``ensemble/``
never names ``members`` or a deep-learning framework.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ensemble", "members")
FRAMEWORKS = ("tensorflow", "keras", "jax", "torch")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test)


def _walk(tree: ast.AST):
    """``ast.walk`` that does not enter ``if __name__ == "__main__":`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo += [child for child in ast.iter_child_nodes(node) if not _is_main_guard(child)]


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (``from P import m`` counts as ``P.m`` when m is a module)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_ensemble_imports_neither_members_nor_a_framework():
    graph = import_graph()
    assert {m: sorted(t for t in ts if t.startswith("members")) for m, ts in graph.items()
            if m.startswith("ensemble") and any(t.startswith("members") for t in ts)} == {}
    for path in (ROOT / "ensemble").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in FRAMEWORKS + ("members",)], path


def test_video_sits_above_prediction():
    graph = import_graph()
    below = {"members.inference.faces", "members.inference.face_model"}
    assert not any(t.startswith("members.video") or t == "members.predict" for m in below for t in graph[m])
    assert not any(t == "members.predict" or t == "members.api" for m in graph if m.startswith("members.video")
                   for t in graph[m])


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The shape of the package, checked on every test run (ARCHITECTURE.md, "Layers" and style rules 3 and 11):
the import-linter layers contract holds; no import cycle between packages (lazy and TYPE_CHECKING imports
included); no file over 450 lines; no class over 30 methods; no mixin (a base class without a constructor that
reads state its subclass sets in its own); the server reaches no model manager past the Provider."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "src" / "hf_provider"
MAX_LINES = 450
MAX_METHODS = 30


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every hf_provider module `path` imports, at any depth of its code (a lazy import is still an import)."""
    mod = _module(path)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("hf_provider.")}


def _unit(module: str) -> str | None:
    """The package (or top-level module) a module belongs to: the nodes of the package graph."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    top = parts[1]
    return top if (PACKAGE / top).is_dir() or (PACKAGE / f"{top}.py").exists() else None


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _sources():
        src = _unit(_module(path))
        for target in _imports(path):
            dst = _unit(target)
            if src and dst and dst != src:
                graph[src].add(dst)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_layers_contract_is_kept() -> None:
    pytest.importorskip("importlinter.cli", reason="import-linter comes with the dev extra")
    # In a child process: import-linter configures logging for its own output, which would leak into later tests.
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]  # as `lint-imports` shows it


def test_no_import_cycle_between_packages() -> None:
    assert _cycles(_package_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_file_over_the_limit() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split along responsibilities (ARCHITECTURE.md rule 11): {long}"


def _classes() -> list[tuple[Path, ast.ClassDef]]:
    return [(p, n) for p in _sources() for n in ast.parse(p.read_text()).body if isinstance(n, ast.ClassDef)]


def test_no_class_over_the_method_limit() -> None:
    big = {
        f"{p.name}:{c.name}": m
        for p, c in _classes()
        if (m := sum(isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef) for b in c.body)) > MAX_METHODS
    }
    assert big == {}


def _bases(c: ast.ClassDef) -> list[str]:
    return [
        b.id if isinstance(b, ast.Name) else b.attr
        for b in c.bases
        if isinstance(b, ast.Name | ast.Attribute)
    ]


def _state(c: ast.ClassDef) -> tuple[set[str], set[str], set[str]]:
    """(attributes it assigns on self, attributes it reads from self, names its body defines)."""
    assigned: set[str] = set()
    read: set[str] = set()
    members: set[str] = set()
    for b in c.body:
        if isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef):
            members.add(b.name)
        elif isinstance(b, ast.Assign):
            for t in b.targets:
                members.update(
                    e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name)
                )
        elif isinstance(b, ast.AnnAssign) and b.value is not None and isinstance(b.target, ast.Name):
            members.add(b.target.id)
    for node in ast.walk(c):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            (assigned if isinstance(node.ctx, ast.Store) else read).add(node.attr)
    return assigned, read, members


def mixins(classes: list[tuple[Path, ast.ClassDef]]) -> list[str]:
    """Base classes without a constructor of their own that read state a subclass sets in its methods: a file
    split of the subclass, not a collaborator that can be built and tested alone."""
    found = []
    for _, base in classes:
        assigned, read, members = _state(base)
        if "__init__" in members:
            continue
        missing = {r for r in read - assigned - members if not r.startswith("__")}
        for _, sub in classes:
            if base.name in _bases(sub):
                s_assigned, _, s_members = _state(sub)
                if host := sorted(m for m in missing if m in s_assigned and m not in s_members):
                    found.append(f"{base.name} reads {sub.name}'s {host}")
    return found


def test_no_mixin_reads_its_host_state() -> None:
    assert mixins(_classes()) == []


def test_the_mixin_check_finds_one() -> None:
    code = """
class Views:
    def describe(self):
        with self._lock:
            return list(self._entries)

class Manager(Views):
    def __init__(self):
        self._lock, self._entries = None, []
"""
    tree = ast.parse(code)
    classes = [(Path("x.py"), n) for n in tree.body if isinstance(n, ast.ClassDef)]
    assert mixins(classes) == ["Views reads Manager's ['_entries', '_lock']"]


def test_the_server_reaches_no_model_manager() -> None:
    """Routes use the Provider's public API (provider.admin, run, stream...), never `provider.manager`."""
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("server", "scaling", "cli")
        for p in sorted((PACKAGE / folder).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if ".manager" in line
    ]
    assert offenders == []

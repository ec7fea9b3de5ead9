"""The architecture, checked from the source: the folders say which code is pure.

- the ``bridged`` package's import graph has no circle (every import counts: at module
  level, under ``TYPE_CHECKING`` and inside functions, since dodging a circle with either
  leaves the circle in the design), and operations never import the composition root;
- ``bridged.core`` imports, transitively, only pure standard-library modules and
  ``bridged.core`` itself: no reactor, socket, serial port, file, clock, TLS or YAML;
- no module is over 500 lines.

Read with :mod:`ast`, never imported, so a test cannot pass because an import failed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "bridged"
CORE = "bridged.core"
MAX_LINES = 500

#: Standard-library modules the pure core may use: data structures, typing, text and
#: number crunching. Nothing here touches a file, socket, clock, process or thread.
#: (``random`` only for the type of the generator a caller injects: the core never seeds
#: or draws from the global one.)
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "binascii",
        "bisect",
        "collections",
        "dataclasses",
        "enum",
        "functools",
        "heapq",
        "itertools",
        "math",
        "operator",
        "random",
        "re",
        "string",
        "types",
        "typing",
    }
)
#: Said explicitly, so a failure names the rule it breaks.
FORBIDDEN_IN_CORE = frozenset(
    {
        "twisted",
        "zope",
        "socket",
        "serial",
        "os",
        "time",
        "ssl",
        "select",
        "asyncio",
        "subprocess",
        "threading",
        "pathlib",
        "yaml",
        "cryptography",
        "bridged.shell",
        "bridged.ops",
        "bridged.tools",
        "bridged.config",
        "bridged.emulator",
    }
)


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a bridged module (resolved), or the full name of an outside module
    kind: str  # "module", "TYPE_CHECKING" or "function"
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.target} ({self.kind} import, line {self.line})"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_in(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under ``node``, with where it sits."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, kind
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _imports_in(child, "function")
        elif isinstance(child, ast.If) and _is_type_checking(child.test) and kind == "module":
            for stmt in child.body:
                yield from _imports_in(ast.Module(body=[stmt], type_ignores=[]), "TYPE_CHECKING")
            for stmt in child.orelse:
                yield from _imports_in(ast.Module(body=[stmt], type_ignores=[]), kind)
        else:
            yield from _imports_in(child, kind)


def imports_of(source: str, name: str, is_package: bool, modules: set[str]) -> list[Import]:
    """The imports of one module; ``from a import b`` names module ``a.b`` if it is one."""
    found: list[Import] = []
    package = name if is_package else name.rpartition(".")[0]
    for stmt, kind in _imports_in(ast.parse(source), "module"):
        if isinstance(stmt, ast.Import):
            targets = [alias.name for alias in stmt.names]
        else:
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (stmt.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in stmt.names
            ]
        for target in targets:
            if target.split(".")[0] == "bridged":
                # The deepest bridged module the name is in (a name inside a module).
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
            found.append(Import(name, target, kind, stmt.lineno))
    return found


@dataclass
class Package:
    modules: dict[str, Path]
    imports: list[Import]

    def internal(self) -> dict[str, list[Import]]:
        edges: dict[str, list[Import]] = {m: [] for m in self.modules}
        for imp in self.imports:
            if imp.target in self.modules and imp.target != imp.importer:
                edges[imp.importer].append(imp)
        return edges


def scan(root: Path = PACKAGE_DIR) -> Package:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    names = set(paths)
    imports = [
        imp
        for name, path in paths.items()
        for imp in imports_of(
            path.read_text(encoding="utf-8"), name, path.name == "__init__.py", names
        )
    ]
    return Package(paths, imports)


@dataclass(frozen=True)
class Circle:
    members: list[str]  # every module of the strongly connected component
    path: list[Import]  # one shortest circle through its first member

    def __str__(self) -> str:
        head = " -> ".join([self.path[0].importer, *(imp.target for imp in self.path)])
        return (
            f"  {head}\n"
            + "".join(f"      {imp}\n" for imp in self.path)
            + f"    (all of {', '.join(self.members)} import each other, some via others)"
        )


def import_circles(package: Package) -> list[Circle]:
    """One circle per strongly connected component of the import graph (Tarjan)."""
    edges = package.internal()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for imp in edges[node]:
            if imp.target not in index:
                visit(imp.target)
                low[node] = min(low[node], low[imp.target])
            elif imp.target in on_stack:
                low[node] = min(low[node], index[imp.target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [Circle(component, _a_circle(component, edges)) for component in components]


def _a_circle(component: list[str], edges: dict[str, list[Import]]) -> list[Import]:
    """A shortest way from the component's first module back to itself, within it."""
    start = component[0]
    members = set(component)
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for imp in edges[node]:
                if imp.target == start:
                    return [*paths[node], imp]
                if imp.target in members and imp.target not in paths:
                    paths[imp.target] = [*paths[node], imp]
                    nxt.append(imp.target)
        frontier = nxt
    raise AssertionError(f"no circle found in {component}")


def core_violations(package: Package) -> list[str]:
    """What bridged.core reaches, transitively, that it must not: each with its path."""
    edges = package.internal()
    outside = [imp for imp in package.imports if imp.target.split(".")[0] != "bridged"]
    via: dict[str, list[Import]] = {m: [] for m in package.modules if _in_core(m)}
    frontier = list(via)
    while frontier:
        node = frontier.pop()
        for imp in edges[node]:
            if imp.target not in via:
                via[imp.target] = [*via[node], imp]
                frontier.append(imp.target)
    problems = []
    for module, path in sorted(via.items()):
        if not _in_core(module):
            problems.append(f"{module} reached: " + "; ".join(map(str, path)))
    for imp in outside:
        if imp.importer in via and _in_core(imp.importer):
            top = imp.target.split(".")[0]
            if top in FORBIDDEN_IN_CORE or top not in PURE_STDLIB:
                rule = "forbidden" if top in FORBIDDEN_IN_CORE else "not a pure stdlib module"
                problems.append(f"{imp} [{rule}]")
    return problems


def _in_core(module: str) -> bool:
    return module == CORE or module.startswith(CORE + ".")


def oversized(root: Path = PACKAGE_DIR) -> dict[str, int]:
    sizes = {
        str(p.relative_to(root.parent)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(root.rglob("*.py"))
    }
    return {path: n for path, n in sizes.items() if n > MAX_LINES}


# --------------------------------------------------------------------------- the checks


def test_the_import_graph_has_no_circle() -> None:
    package = scan()
    circles = import_circles(package)
    assert not circles, "import circles:\n" + "\n".join(map(str, circles))


def test_operations_never_import_the_composition_root() -> None:
    """Metrics, /healthz, status and systemd notify read a snapshot, not the daemon."""
    package = scan()
    assert "bridged.shell.daemon" in package.modules
    wrong = [
        str(imp)
        for imp in package.imports
        if imp.importer.startswith("bridged.ops.")
        and imp.target in ("bridged.shell.daemon", "bridged.shell.link_health")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_core_imports_nothing_that_does_io() -> None:
    problems = core_violations(scan())
    assert not problems, "bridged.core must stay pure:\n" + "\n".join(f"  {p}" for p in problems)


def test_no_module_is_over_500_lines() -> None:
    too_big = oversized()
    assert not too_big, f"modules over {MAX_LINES} lines:\n" + "\n".join(
        f"  {path}: {n}" for path, n in too_big.items()
    )


# --------------------------------------------------------------------------- the checker


def test_every_kind_of_import_is_seen(tmp_path: Path) -> None:
    """The checker itself: imports at module level, under TYPE_CHECKING, in functions and
    relative ones all count; a circle made of them is found and printed; an impure core
    module is named with the path that reaches it."""
    root = tmp_path / "bridged"
    for folder in ("core", "shell"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "core" / "a.py").write_text("from . import b\nimport time\n")
    (root / "core" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bridged.shell.c import C\n"
    )
    (root / "shell" / "c.py").write_text(
        "class C:\n    def f(self):\n        from bridged.core.a import x\n"
    )
    package = scan(root)
    kinds = {(imp.importer, imp.target): imp.kind for imp in package.imports}
    assert kinds[("bridged.core.a", "bridged.core.b")] == "module"
    assert kinds[("bridged.core.b", "bridged.shell.c")] == "TYPE_CHECKING"
    assert kinds[("bridged.shell.c", "bridged.core.a")] == "function"
    (circle,) = import_circles(package)
    assert [imp.importer for imp in circle.path] == [
        "bridged.core.a",
        "bridged.core.b",
        "bridged.shell.c",
    ]
    problems = core_violations(package)
    assert any(
        p.startswith("bridged.shell.c reached: bridged.core.b -> bridged.shell.c") for p in problems
    )
    assert any("bridged.core.a -> time" in p and "[forbidden]" in p for p in problems)

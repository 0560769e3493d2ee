"""The package's structural rules, checked on its source text (``ast``), without importing it.

- no module uses another module's underscore names;
- no import circles among synarrow modules;
- storage code (``log/``, ``columnar/``, ``fileio``, ``engine/``) never imports a user layer;
- every public module defines ``__all__``, and every name in it exists;
- exception classes are defined only in ``synarrow/errors.py``.

Each failure lists every offender as ``file:line``, so one run shows all there is to fix.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "synarrow"

# Standard-library names that start with an underscore yet are meant to be used.
STDLIB_PRIVATE_OK = frozenset(
    {
        ("os", "_exit"),  # exit a child process without running cleanup handlers
        ("sys", "_getframe"),
    }
)

STORAGE = ("synarrow.log", "synarrow.columnar", "synarrow.fileio", "synarrow.engine")
# The only modules outside storage that storage may import (none of them imports upward).
STORAGE_MAY_IMPORT = ("synarrow.errors", "synarrow.config", "synarrow.optional")


# -- the package as parsed source --------------------------------------------------------------


@dataclass
class Module:
    """One module of the package: its dotted name, file and syntax tree."""

    name: str
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def at(self, node: ast.AST) -> str:
        return f"{self.rel}:{getattr(node, 'lineno', 0)}"


@cache
def modules() -> dict[str, Module]:
    """Every module of ``synarrow`` by dotted name (a package by its own name)."""
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found[name] = Module(name, path, tree, is_package)
    return found


def is_private(name: str) -> bool:
    """``_x`` and ``__x`` are private; ``__x__`` (dunder) names are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from X import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def known(name: str) -> str | None:
    """The deepest synarrow module that ``name`` (a dotted import target) names, if any."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


# -- import graph ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str


def imports(mod: Module) -> Iterator[Edge]:
    """Every synarrow module ``mod`` imports, anywhere in its text (functions and
    ``TYPE_CHECKING`` blocks included); ``from pkg import sub`` is an edge to ``pkg.sub``."""
    mods = modules()
    for node in ast.walk(mod.tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(mod, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in mods else base)
        for target in targets:
            resolved = known(target)
            if resolved is None or resolved == mod.name:
                continue
            # Importing a module runs its parent packages first anyway: not an edge.
            if mod.name.startswith(resolved + "."):
                continue
            yield Edge(mod.name, resolved, mod.at(node))


@cache
def graph() -> dict[str, list[Edge]]:
    return {name: list(imports(mod)) for name, mod in modules().items()}


def strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(edges[v])):
                w = edges[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


# -- class attributes defined in a module -----------------------------------------------------


def class_attributes(mod: Module) -> set[str]:
    """Names that classes of ``mod`` define: methods, class attributes, ``__slots__`` and
    attributes assigned through ``self``/``cls``."""
    names: set[str] = set()
    for cls in (n for n in ast.walk(mod.tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
                        if target.id == "__slots__":
                            names.update(
                                c.value
                                for c in ast.walk(stmt.value)
                                if isinstance(c, ast.Constant) and isinstance(c.value, str)
                            )
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                names.add(stmt.target.id)
        for node in ast.walk(cls):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if (
                        isinstance(t, ast.Attribute)
                        and isinstance(t.value, ast.Name)
                        and t.value.id in ("self", "cls")
                    ):
                        names.add(t.attr)
    return names


def stdlib_alias_map(mod: Module) -> dict[str, str]:
    """Local names bound by plain ``import x`` / ``import x as y`` at any level."""
    aliases: dict[str, str] = {}
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.partition(".")[0]] = alias.name
    return aliases


@cache
def attribute_owners() -> dict[str, frozenset[str]]:
    """For each attribute name, the modules whose classes define it."""
    owners: dict[str, set[str]] = {}
    for mod in modules().values():
        for attr in class_attributes(mod):
            owners.setdefault(attr, set()).add(mod.name)
    return {a: frozenset(m) for a, m in owners.items()}


def own_attributes(mod: Module) -> set[str]:
    """Underscore attributes that only classes of ``mod`` define: ``obj._x`` on them is
    access between classes of one module. A name that classes of another module define
    too is ambiguous (``db._closed`` in a module with its own ``_closed``), so not counted."""
    return {a for a, owners in attribute_owners().items() if owners == {mod.name} and is_private(a)}


def also_defined(mod: Module, attr: str) -> str:
    """For a message: why an attribute this module's classes define still counts as foreign."""
    owners = attribute_owners().get(attr, frozenset())
    if mod.name not in owners:
        return ""
    others = ", ".join(sorted(owners - {mod.name}))
    return f" (ambiguous: classes in {others} define {attr} too)"


def private_uses(mod: Module) -> Iterator[str]:
    own = own_attributes(mod)
    aliases = stdlib_alias_map(mod)
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ImportFrom):
            base = resolve_from(mod, node)
            if any(is_private(part) for part in base.split(".")):
                yield f"{mod.at(node)} imports private module {base}"
            for alias in node.names:
                if is_private(alias.name) and (base, alias.name) not in STDLIB_PRIVATE_OK:
                    yield f"{mod.at(node)} from {base} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(is_private(part) for part in alias.name.split(".")):
                    yield f"{mod.at(node)} imports private module {alias.name}"
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            value = node.value
            if isinstance(value, ast.Name):
                if value.id in ("self", "cls"):
                    continue
                if (aliases.get(value.id), node.attr) in STDLIB_PRIVATE_OK:
                    continue
                if value.id in aliases:  # a module's private name: never our business
                    yield f"{mod.at(node)} {ast.unparse(node)} (module {aliases[value.id]})"
                    continue
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "super"
            ):
                continue
            if node.attr in own:
                continue  # defined by a class of this same module
            yield f"{mod.at(node)} {ast.unparse(node)[:80]}{also_defined(mod, node.attr)}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
        ):
            obj = node.args[0]
            if isinstance(obj, ast.Name) and obj.id in ("self", "cls"):
                continue
            if node.args[1].value in own:
                continue
            yield f"{mod.at(node)} {ast.unparse(node)[:80]}"


# -- names a module binds ----------------------------------------------------------------------


def module_bindings(tree: ast.Module) -> tuple[set[str], bool]:
    """Names bound at module level (also under ``if``/``try``/``with``), and whether a
    ``from x import *`` makes the set incomplete."""
    names: set[str] = set()
    star = False

    def targets(t: ast.expr) -> None:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.add(n.id)

    def visit(body: list[ast.stmt]) -> None:
        nonlocal star
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    targets(t)
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                targets(stmt.target)
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                targets(stmt.target)
                visit(stmt.body + stmt.orelse)
            elif isinstance(stmt, ast.Import):
                for a in stmt.names:
                    names.add(a.asname or a.name.partition(".")[0])
            elif isinstance(stmt, ast.ImportFrom):
                for a in stmt.names:
                    if a.name == "*":
                        star = True
                    else:
                        names.add(a.asname or a.name)
            elif isinstance(stmt, ast.If):
                visit(stmt.body + stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body + stmt.orelse + stmt.finalbody)
                for h in stmt.handlers:
                    visit(h.body)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                visit(stmt.body)

    visit(tree.body)
    return names, star


def declared_all(mod: Module) -> tuple[list[tuple[str, ast.AST]], ast.AST | None]:
    """The string names of the module-level ``__all__`` (assignments and ``+=``) and the
    first statement defining it."""
    entries: list[tuple[str, ast.AST]] = []
    first: ast.AST | None = None
    for stmt in mod.tree.body:
        value = None
        if isinstance(stmt, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
                value = stmt.value
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            if isinstance(stmt.target, ast.Name) and stmt.target.id == "__all__":
                value = stmt.value
        if value is None:
            continue
        first = first or stmt
        for c in ast.walk(value):
            if isinstance(c, ast.Constant) and isinstance(c.value, str):
                entries.append((c.value, c))
    return entries, first


def lazy_names(mod: Module) -> dict[str, str]:
    """For a module with a module-level ``__getattr__``: names it serves from a module-level
    ``{"Name": "synarrow.module"}`` table, mapped to that module."""
    if not any(isinstance(s, ast.FunctionDef) and s.name == "__getattr__" for s in mod.tree.body):
        return {}
    table: dict[str, str] = {}
    for stmt in mod.tree.body:
        value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values, strict=True):
                if (
                    isinstance(k, ast.Constant)
                    and isinstance(v, ast.Constant)
                    and isinstance(k.value, str)
                    and isinstance(v.value, str)
                    and v.value in modules()
                ):
                    table[k.value] = v.value
    return table


def public_modules() -> list[Module]:
    return [
        m
        for name, m in modules().items()
        if not any(is_private(p) for p in name.split(".")) and not name.endswith("__main__")
    ]


# -- the tests ---------------------------------------------------------------------------------


def by_place(offender: str) -> tuple[str, int, str]:
    """Sort key: file, then line number as a number."""
    place, _, rest = offender.partition(" ")
    file, _, line = place.rpartition(":")
    return (file, int(line) if line.isdigit() else 0, rest)


def fail_with(title: str, offenders: list[str]) -> None:
    if offenders:
        listed = sorted(set(offenders), key=by_place)
        pytest.fail(f"{title} ({len(listed)}):\n  " + "\n  ".join(listed), pytrace=False)


def test_the_package_is_found() -> None:
    names = modules()
    assert {"synarrow", "synarrow.db", "synarrow.errors", "synarrow.log"} <= set(names)


def fake_module(source: str) -> Module:
    return Module("synarrow.fake", PACKAGE / "fake.py", ast.parse(source), is_package=False)


def test_the_underscore_check_sees_what_it_must() -> None:
    """The checker itself: each kind of cross-module access is caught, the allowed ones not."""
    source = """
import os
import synarrow._hidden
from synarrow.db import _helper
from ._also import thing
def f(db, obj):
    db._lock
    getattr(obj, "_state")
    os._exit(0)
    os._other
class C(Base):
    def m(self):
        self._mine
        super()._hook()
        type(self)._cls_attr
"""
    found = [o.partition(" ")[2] for o in private_uses(fake_module(source))]
    assert sorted(found) == sorted(
        [
            "imports private module synarrow._hidden",
            "from synarrow.db import _helper",
            "imports private module synarrow._also",
            "db._lock",
            "getattr(obj, '_state')",
            "os._other (module os)",
            "type(self)._cls_attr",
        ]
    ), found


def test_the_circle_finder_finds_circles() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e", "d"], "f": ["g"]}
    edges["g"] = ["f"]
    assert sorted(strongly_connected(edges)) == [["a", "b", "c"], ["f", "g"]]


def test_no_module_uses_another_modules_underscore_names() -> None:
    offenders = [o for mod in modules().values() for o in private_uses(mod)]
    fail_with("underscore names used from outside their module", offenders)


def test_no_import_circles() -> None:
    offenders = []
    edges = {m: sorted({e.target for e in es}) for m, es in graph().items()}
    for comp in strongly_connected(edges):
        members = set(comp)
        inside = [
            f"{e.where} {e.source} -> {e.target}"
            for m in comp
            for e in graph()[m]
            if e.target in members
        ]
        offenders.append("circle " + " <-> ".join(comp) + ":\n    " + "\n    ".join(inside))
    fail_with("import circles among synarrow modules", offenders)


def upward_chains(edges: dict[str, list[Edge]]) -> list[str]:
    """Import chains from a storage module to anything but storage and the few modules it
    may use (``STORAGE_MAY_IMPORT``), each reported once at its first edge, breadth first
    (so the shortest chain is shown)."""
    offenders: list[str] = []
    for name in sorted(edges):
        if not is_within(name, STORAGE):
            continue
        for first in edges[name]:
            seen = {name}
            queue: list[tuple[str, list[Edge]]] = [(first.target, [first])]
            while queue:
                node, path = queue.pop(0)
                if node in seen:
                    continue
                seen.add(node)
                if not is_within(node, STORAGE + STORAGE_MAY_IMPORT):
                    chain = " -> ".join([name, *(e.target for e in path)])
                    where = ", ".join(e.where for e in path)
                    offenders.append(f"{first.where} {chain} (via {where})")
                    break
                queue.extend((e.target, [*path, e]) for e in edges.get(node, []))
    return sorted(set(offenders))


def test_the_upward_check_follows_chains() -> None:
    def edge(a: str, b: str) -> Edge:
        return Edge(a, b, f"{a}.py:1")

    edges = {
        "synarrow.log.writer": [edge("synarrow.log.writer", "synarrow.config")],
        "synarrow.config": [edge("synarrow.config", "synarrow.sql")],
        "synarrow.columnar.ipc": [edge("synarrow.columnar.ipc", "synarrow.errors")],
        "synarrow.engine.batches": [edge("synarrow.engine.batches", "synarrow.inputs")],
        "synarrow.errors": [],
        "synarrow.sql": [],
        "synarrow.inputs": [],
    }
    found = upward_chains(edges)
    assert len(found) == 2, found
    assert any("synarrow.log.writer -> synarrow.config -> synarrow.sql" in f for f in found)
    assert any("synarrow.engine.batches -> synarrow.inputs" in f for f in found)


def test_storage_never_imports_user_layers() -> None:
    """Direct imports, and chains through other modules, from storage to a user layer (or to
    the top-level package, which re-exports ``SynaDB``)."""
    fail_with("storage code importing user-facing layers", upward_chains(graph()))


def test_storage_does_not_import_the_package_namespace() -> None:
    """``from synarrow import X`` in storage code runs ``synarrow/__init__`` (and so ``db``)."""
    offenders = []
    for mod in modules().values():
        if not is_within(mod.name, STORAGE):
            continue
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.ImportFrom) and resolve_from(mod, node) == "synarrow":
                for alias in node.names:
                    if f"synarrow.{alias.name}" not in modules():
                        offenders.append(f"{mod.at(node)} from synarrow import {alias.name}")
            elif isinstance(node, ast.Import) and any(a.name == "synarrow" for a in node.names):
                offenders.append(f"{mod.at(node)} import synarrow")
    fail_with("storage code importing the top-level package", offenders)


def test_every_public_module_defines_all() -> None:
    offenders = []
    for mod in public_modules():
        if declared_all(mod)[1] is None:
            offenders.append(f"{mod.rel}:1 {mod.name} has no __all__")
    fail_with("public modules without __all__", offenders)


def test_every_name_in_all_exists() -> None:
    offenders = []
    mods = modules()
    for mod in public_modules():
        entries, _ = declared_all(mod)
        bound, star = module_bindings(mod.tree)
        if star:
            continue
        lazy = lazy_names(mod)
        seen: set[str] = set()
        for name, node in entries:
            if name in seen:
                offenders.append(f"{mod.at(node)} {mod.name}.__all__ lists {name!r} twice")
            seen.add(name)
            if name in bound or (mod.is_package and f"{mod.name}.{name}" in mods):
                continue
            target = lazy.get(name)
            if target is not None and name in module_bindings(mods[target].tree)[0]:
                continue
            offenders.append(f"{mod.at(node)} {mod.name}.__all__ lists missing name {name!r}")
    fail_with("names in __all__ that the module does not define", offenders)


@dataclass
class ClassInfo:
    module: Module
    node: ast.ClassDef
    bases: list[str] = field(default_factory=list)


def base_name(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    if isinstance(expr, ast.Subscript):  # Generic[...] and the like
        return base_name(expr.value)
    return None


def exceptions_outside_errors(mods: list[Module]) -> list[str]:
    """Classes deriving (through any chain of bases) from an exception, outside errors.py."""
    classes = [
        ClassInfo(mod, node, [b for b in map(base_name, node.bases) if b])
        for mod in mods
        for node in ast.walk(mod.tree)
        if isinstance(node, ast.ClassDef)
    ]
    exceptions = {
        n
        for n in dir(builtins)
        if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), Exception)
    }
    # Bases from other libraries (pyarrow.lib.ArrowInvalid, flight.FlightError ...) by name.
    exceptions |= {
        b for c in classes for b in c.bases if b.endswith(("Error", "Exception", "Warning"))
    }
    changed = True
    while changed:
        changed = False
        for c in classes:
            if c.node.name not in exceptions and any(b in exceptions for b in c.bases):
                exceptions.add(c.node.name)
                changed = True
    return [
        f"{c.module.at(c.node)} class {c.node.name}({', '.join(c.bases)})"
        for c in classes
        if c.module.name != "synarrow.errors" and any(b in exceptions for b in c.bases)
    ]


def test_the_exception_check_follows_bases() -> None:
    source = """
class Base(ValueError): ...
class Derived(Base): ...
class Foreign(flight.FlightServerError): ...
class Plain: ...
class Mixin(Plain, dict): ...
"""
    found = [o.partition(" class ")[2] for o in exceptions_outside_errors([fake_module(source)])]
    assert found == ["Base(ValueError)", "Derived(Base)", "Foreign(FlightServerError)"], found


def test_exceptions_are_defined_only_in_errors() -> None:
    offenders = exceptions_outside_errors(list(modules().values()))
    fail_with("exception classes defined outside synarrow/errors.py", offenders)

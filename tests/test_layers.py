"""Imports point downward only, and no import cycle exists, in every module under src/cleanroom.

The layers, from the top (a package may import from its own package and from any lower layer,
never from its own layer's other packages or from above)::

    cli
    demo (the ``demo`` command's story, which runs the CLI in child processes)
    advertiser (the advertiser's side), service (the platform's side)
    protocol, store
    policy
    crypto, identifiers, tls
    _files, _fork_server, _output, _signing, _textfile (private helpers: files, the workers'
        fork server, printing, signatures, input formats)
    errors, _proto (generated), the package root (its version)

Every import counts for the layers: at module level, inside functions (imported lazily), and
under ``TYPE_CHECKING``, because each is a dependency a reader has to follow. A cycle is one of
imports that run: a module may name, for its type hints only, a type of a module of its own
package that imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "cleanroom"

LAYERS: dict[str, int] = {
    "cli": 8,
    "demo": 7,
    "advertiser": 6,
    "service": 6,
    "protocol": 5,
    "store": 5,
    "policy": 4,
    "crypto": 3,
    "identifiers": 3,
    "tls": 3,
    "_files": 2,
    "_fork_server": 2,
    "_output": 2,
    "_signing": 2,
    "_textfile": 2,
    "errors": 1,
    "_proto": 1,
    "": 1,  # cleanroom/__init__.py: the version
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
# C extensions, known by their type stubs: imported, but importing nothing of cleanroom.
EXTENSIONS = {module_name(p) for p in ROOT.rglob("*.pyi")} - set(MODULES)


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def package_of(name: str) -> str:
    """The top-level part of cleanroom a module belongs to (``""`` for the root)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, *, runtime: bool) -> Iterator[ast.AST]:
    """Every node of ``tree``; with ``runtime``, none under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if runtime and _is_type_checking(node):
            assert isinstance(node, ast.If)
            for other in node.orelse:
                yield other
                yield from _nodes(other, runtime=runtime)
            continue
        yield node
        yield from _nodes(node, runtime=runtime)


def imports_of(name: str, *, runtime: bool = False) -> Iterator[tuple[str, int]]:
    """The cleanroom modules ``name`` imports, each with the line of its import.

    Args:
        name: the module.
        runtime: only the imports that run (not those under ``if TYPE_CHECKING:``).
    """
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    for node in _nodes(tree, runtime=runtime):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield from _resolve(base, [alias.name for alias in node.names], node.lineno)


def _resolve(base: str, names: tuple[str, ...] | list[str], line: int) -> Iterator[tuple[str, int]]:
    if base != "cleanroom" and not base.startswith("cleanroom."):
        return
    # ``from package import submodule`` depends on the submodule, not on the package's __init__.
    submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES.keys() | EXTENSIONS]
    yield from ((module, line) for module in submodules if module in MODULES)
    if submodules and len(submodules) == len(names):
        return
    if base not in MODULES:
        pytest.fail(f"an import of {base!r} names no module under src/cleanroom")
    yield base, line


def test_every_part_of_cleanroom_has_a_layer() -> None:
    assert {package_of(name) for name in MODULES} == set(LAYERS)


def allowed(name: str, target: str) -> bool:
    """Whether module ``name`` may import module ``target``."""
    own, other = package_of(name), package_of(target)
    return own == other or LAYERS[other] < LAYERS[own]


def test_imports_point_downward() -> None:
    upward = [
        f"{MODULES[name].relative_to(SRC)}:{line} {name} -> {target}"
        for name in MODULES
        for target, line in imports_of(name)
        if not allowed(name, target)
    ]
    assert upward == []


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("cleanroom.protocol._wire", "cleanroom.service.servicer"),
        ("cleanroom.store.epochs", "cleanroom.service.platform_sessions"),
        ("cleanroom.crypto.suites", "cleanroom.identifiers"),
        ("cleanroom.advertiser._client", "cleanroom.service.server"),
        ("cleanroom.service.servicer", "cleanroom.advertiser"),
        ("cleanroom.policy", "cleanroom.protocol"),
        ("cleanroom.errors", "cleanroom.crypto"),
    ],
)
def test_the_rule_refuses_imports_upward_or_across(name: str, target: str) -> None:
    assert not allowed(name, target)


def test_no_import_cycle() -> None:
    graph = {
        name: {target for target, _ in imports_of(name, runtime=True)} - {name} for name in MODULES
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert [" -> ".join(cycle) for cycle in cycles] == []


def test_the_walk_sees_the_imports() -> None:
    # The checks above are only as good as the walk: it must see lazy and TYPE_CHECKING imports.
    advertiser = {target for target, _ in imports_of("cleanroom.advertiser._advertiser")}
    assert {"cleanroom.protocol", "cleanroom.crypto", "cleanroom.advertiser._client"} <= advertiser
    args = {target for target, _ in imports_of("cleanroom.cli._args")}
    assert {"cleanroom.advertiser", "cleanroom.tls"} <= args  # imported inside a function
    cluster = {target for target, _ in imports_of("cleanroom.crypto.cluster")}
    assert "cleanroom.crypto.batch" in cluster  # under TYPE_CHECKING
    assert "cleanroom.crypto.batch" not in {
        target for target, _ in imports_of("cleanroom.crypto.cluster", runtime=True)
    }
    assert len(MODULES) > 70

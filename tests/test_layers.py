"""The code's structure as tests: the crypto fence, module sizes, no import cycles, no hidden imports.

Read from the source (``ast``), so these hold for every module whether a test imports it or not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("vault", "security")
ALL = (*CORE, "server", "client")
MAX_LINES = 600


def modules(*packages: str) -> Iterator[tuple[str, Path]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imported(tree: ast.AST) -> Iterator[tuple[ast.stmt, str]]:
    """Every module an import statement names (``from a import b`` names ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node, node.module
            for alias in node.names:
                yield node, f"{node.module}.{alias.name}"


def test_only_vault_imports_the_crypto_primitives() -> None:
    crossings = [f"{name} imports {target}" for name, path in modules("security", "server", "client")
                 for _, target in imported(ast.parse(path.read_text()))
                 if target == "vault.crypto" or target.startswith("vault.crypto.")]
    assert crossings == []


def test_modules_are_small() -> None:
    """The code, and the tests and benchmarks (their helpers included): long test modules are split by topic."""
    large = [f"{path.relative_to(ROOT)}: {n} lines" for _, path in modules(*ALL, "tests", "bench")
             if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert large == []


def hidden_imports(*packages: str) -> Iterator[tuple[str, int, str]]:
    """Every import inside a function or class: (module, line, what it imports)."""
    for name, path in modules(*packages):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node, target in imported(tree):
            if id(node) not in top:
                yield name, node.lineno, target


#: The only libraries a core module may import inside a function, each where its import is too dear for every
#: command that loads the module (a library cannot close a cycle of ours): vault.pin parses a certificate with
#: cryptography.x509 for an ``spki`` pin only, and x509's import costs every ``mvault`` command ~40 ms of CPU.
LAZY_IN_CORE = {("vault.pin", "cryptography")}


def test_core_imports_only_at_module_level() -> None:
    """No import inside a function or class (the way to dodge a cycle); ``TYPE_CHECKING`` blocks and the
    libraries of ``LAZY_IN_CORE`` aside."""
    assert [f"{name}:{line} imports {target}" for name, line, target in hidden_imports(*CORE)
            if (name, target.split(".")[0]) not in LAZY_IN_CORE] == []


def test_no_project_import_hides_in_a_function() -> None:
    """In server/ and client/ an import inside a function may only load an optional or platform library
    (uvloop, resource, ctypes), never one of our modules: that is how a cycle is dodged."""
    assert [f"{name}:{line} imports {target}" for name, line, target in hidden_imports("server", "client")
            if target.split(".")[0] in ALL] == []


#: modules that import others by name at run time (``importlib.import_module``): client/cli/main.py imports a
#: command's module only when the command runs (``mvault --help`` stays fast), from its table of module names.
#: client/cli/fast.py (the console script) imports client/cli/main.py only when a running sync watcher did not
#: answer, so that the fast path of `mvault sync TEAM DIR` loads neither click nor aiohttp nor the crypto libraries.
DYNAMIC_IMPORTERS = {"client.cli.main", "client.cli.fast"}


def named(tree: ast.AST, known: Iterable[str]) -> set[str]:
    """Our modules a module names in a string constant: what ``importlib`` may import (an ``import``
    statement is invisible there), so the cycle check below counts them as imports."""
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known}


def calls_import_module(tree: ast.AST) -> bool:
    return any(isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
        or isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
        for node in ast.walk(tree))


def test_dynamic_imports_only_from_a_table_of_names() -> None:
    """A run-time import by name could hide a cycle: only the modules listed above do it (their strings are
    in the graph of ``test_no_import_cycles``)."""
    assert {name for name, path in modules(*ALL) if calls_import_module(ast.parse(path.read_text()))} \
        == DYNAMIC_IMPORTERS


def test_no_import_cycles() -> None:
    known = dict(modules(*ALL))
    trees = {name: ast.parse(path.read_text()) for name, path in known.items()}
    graph = {name: ({t for _, t in imported(tree) if t in known} | named(tree, known)) - {name}
             for name, tree in trees.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []

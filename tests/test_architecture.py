"""The house's rules, checked on the code as it is (README, "Architecture").

1. Rooms import downwards only: the import-linter layers contract in ``pyproject.toml``.
2. No import cycle anywhere in ``analysis`` or ``models`` (module level or inside functions).
3. No module imports another module's ``_private`` name.
4. Only ``analysis/engine/`` touches a private name of nutpie, PyMC, PyTensor, bambi, numba or arviz.
5. Every room's ``__init__`` says what the room is for and exports its public names in ``__all__``.
6. No source file is much over 600 lines.

Each check is also run against a deliberately broken example, so that it is shown to be able to fail.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analysis", "models")
ENGINE = ROOT / "analysis" / "engine"
LIBRARIES = ("nutpie", "pymc", "pytensor", "bambi", "numba", "arviz", "arviz_base", "arviz_stats", "arviz_plots")
MAX_LINES = 650  # "about 600"


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


# --- 1. layers ------------------------------------------------------------------------------------


def test_rooms_import_downwards_only():
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_layers_contract_catches_an_upward_import():
    graph = grimp.build_graph(*PACKAGES)
    graph.add_import(importer="analysis.study.data", imported="analysis.run.config")
    illegal = graph.find_illegal_dependencies_for_layers(
        layers=["analysis.run", "analysis.study"], containers=set())
    assert illegal, "an upward import study -> run was not reported"


# --- 2. cycles ------------------------------------------------------------------------------------


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return out


def _without_package_inits(graph: grimp.ImportGraph) -> grimp.ImportGraph:
    """Drop the imports made by packages' ``__init__`` re-exports (a package importing its own
    children is how ``__all__`` re-exports work, not a dependency cycle)."""
    for pkg in [m for m in graph.modules if graph.find_children(m)]:
        for child in graph.find_modules_directly_imported_by(pkg):
            if child.startswith(pkg + "."):
                graph.remove_import(importer=pkg, imported=child)
    return graph


def test_no_import_cycles():
    cycles = _cycles(_without_package_inits(grimp.build_graph(*PACKAGES)))
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_check_can_fail():
    graph = _without_package_inits(grimp.build_graph(*PACKAGES))
    graph.add_import(importer="analysis.engine.refit", imported="analysis.engine.sampling")
    graph.add_import(importer="analysis.engine.sampling", imported="analysis.engine.refit")
    assert any("analysis.engine.refit" in c for c in _cycles(graph))


# --- 3. private names across modules --------------------------------------------------------------


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in PACKAGES:
                priv = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if priv:
                    bad.append(f"{path}:{node.lineno}: from {node.module} import {', '.join(priv)}")
    return bad


def test_no_module_imports_another_modules_private_name():
    bad = [line for p in _sources() for line in _private_imports(p)]
    assert not bad, "\n".join(bad)


def test_private_import_check_can_fail(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from analysis.engine.compile import _cached_compile, compile_model\nfrom os import _exit\n")
    assert len(_private_imports(f)) == 1


# --- 4. private third-party APIs only in the engine ------------------------------------------------

_PRIVATE_ATTR = re.compile(r"\b(?:" + "|".join(LIBRARIES) + r")(?:\.\w+)*\._[a-z]\w*")


def _third_party_private_uses(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    aliases: dict[str, str] = {}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in LIBRARIES:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
                    if any(part.startswith("_") for part in a.name.split(".")):
                        bad.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in LIBRARIES:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                    if a.name.startswith("_") or any(p.startswith("_") for p in node.module.split(".")):
                        bad.append(f"{node.lineno}: from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                bad.append(f"{node.lineno}: {ast.unparse(node)}")
    return [f"{path}:{b}" for b in bad]


def test_private_library_apis_only_in_the_engine():
    bad = [b for p in _sources() if not p.is_relative_to(ENGINE) for b in _third_party_private_uses(p)]
    assert not bad, "private third-party API outside analysis/engine:\n" + "\n".join(bad)


def test_private_library_check_can_fail(tmp_path):
    f = tmp_path / "probe.py"
    f.write_text("import nutpie.compile_pymc as ncp\nfrom pymc.util import _get_seeds_per_chain\n"
                 "x = ncp._prepare_dims_and_coords\nimport numpy as np\ny = np._core\n")
    assert len(_third_party_private_uses(f)) == 2


# --- 5. rooms say what they are for ----------------------------------------------------------------

ROOMS = sorted(p.parent for p in (ROOT / "analysis").glob("*/__init__.py"))


@pytest.mark.parametrize("room", ROOMS, ids=lambda p: p.name)
def test_room_init_documents_and_exports(room):
    name = f"analysis.{room.name}"
    mod = importlib.import_module(name)
    assert mod.__doc__ and len(mod.__doc__.split()) >= 8, f"{name}.__init__ does not say what the room is for"
    assert getattr(mod, "__all__", None), f"{name} has no __all__"
    for public in mod.__all__:
        assert getattr(mod, public, None) is not None, f"{name}.__all__ names {public!r}, which it does not provide"


# --- 6. file size ----------------------------------------------------------------------------------


def test_no_source_file_is_much_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"

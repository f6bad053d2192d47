"""The seams of DEVELOPERS.md, enforced on the source (every import, lazy ones included).

- Only `export/contract.py` imports the training side; the rest of `export/` imports
  `edgekd.errors`, `edgekd.shared` and itself.
- `edgekd.explain` and `edgekd.export` never import each other.
- `edgekd.shared` imports no torch and nothing of either side.
- No import cycle between modules; test helpers are not in the wheel.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_FREE_DATA = {"edgekd.data"}  # discovery/manifests: torch-free (torchdata, cache excluded below)


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "export":  # installed as edgekd.export (pyproject package-dir)
        parts = ["edgekd", "export", *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources() -> dict[str, Path]:
    files = [*REPO.joinpath("edgekd").rglob("*.py"), *REPO.joinpath("export").rglob("*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, at any depth (lazy imports count)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return found


def internal(names: set[str], modules: dict[str, Path]) -> set[str]:
    return {n for n in names if n in modules}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sources()


def test_only_the_contract_imports_the_training_side():
    allowed = ("edgekd.errors", "edgekd.shared", "edgekd.export")
    bad = {}
    for name, path in MODULES.items():
        if not under(name, "edgekd.export") or name == "edgekd.export.contract":
            continue
        crossing = {n for n in internal(imports(path), MODULES)
                    if n != "edgekd" and not any(under(n, a) for a in allowed)}
        if crossing:
            bad[name] = sorted(crossing)
    assert not bad, f"export modules importing the training side outside export/contract.py: {bad}"


def test_explain_and_export_do_not_import_each_other():
    pairs = [("edgekd.explain", "edgekd.export"), ("edgekd.export", "edgekd.explain")]
    bad = [(name, n) for a, b in pairs for name, path in MODULES.items() if under(name, a)
           for n in imports(path) if under(n, b)]
    assert not bad, bad


def test_shared_is_torch_free_and_belongs_to_neither_side():
    ok = ("edgekd.errors", "edgekd.shared", *TORCH_FREE_DATA)
    bad = []
    for name, path in MODULES.items():
        if not under(name, "edgekd.shared"):
            continue
        for n in imports(path):
            if n.split(".")[0] in ("torch", "torchvision", "timm", "accelerate"):
                bad.append((name, n))
            elif n in MODULES and n != "edgekd" and not any(under(n, a) for a in ok):
                bad.append((name, n))
    assert not bad, bad


def test_torch_free_data_modules_import_no_torch():
    torch_side = {"edgekd.data.torchdata", "edgekd.data.cache"}
    bad = [(name, n) for name, path in MODULES.items() if under(name, "edgekd.data") and name not in torch_side
           for n in imports(path) if n.split(".")[0] == "torch" or n in torch_side]
    assert not bad, bad


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules():
    """Package `__init__`s re-exporting their own children are not cycles; anything else is."""
    graph = {}
    for name, path in MODULES.items():
        deps = {n for n in internal(imports(path), MODULES) if n != name and not under(name, n)}
        graph[name] = deps
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_test_helpers_in_the_wheel():
    shipped = sorted(n for n in MODULES if n.rsplit(".", 1)[-1] in ("testing", "conftest", "fixtures"))
    assert not shipped, f"{shipped} ship in the wheel; test helpers belong in tests/"


def test_no_test_helpers_import_pytest():
    bad = [name for name, path in MODULES.items() if "pytest" in {n.split(".")[0] for n in imports(path)}]
    assert not bad, bad

"""The package's structure, enforced: no import cycles (function-local imports included),
imports only go down the layers, no module reaches into another module's private names,
and only the data dispatcher looks at the type of the input (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mogsgd"

#: Bottom to top; a module may import its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("mogsgd", "params", "density", "gradients", "em", "online_em", "optim", "init",
              "standardize", "validation", "errors", "_random", "_files", "io", "datasets",
              "metrics", "covariance", "csv_parse")),
    ("backends", ("fast", "backends", "api")),
    ("data", ("data", "chunks", "stream", "csv_source", "distributed")),
    ("solvers", ("train", "solvers")),
    ("persistence", ("model_io", "checkpoint", "state_checks")),
    ("estimator", ("estimator", "mixture", "settings")),
    ("applications", ("selection", "report", "plotting", "plot_training", "_plot_common",
                      "cli", "cli_safety", "__main__")),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    name = ".".join(rel.parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> dict[str, list[str]]:
    """``{imported module: [imported names]}``, every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                mod = ".".join(parts[: len(parts) - node.level + 1]
                               + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # the module named after ``from`` runs (a package's __init__ too), then each name
            targets = [(mod, [])] + [(f"{mod}.{a.name}", []) if f"{mod}.{a.name}" in known
                                     else (mod, [a.name]) for a in node.names]
        else:
            continue
        for target, names in targets:
            while target and target not in known:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                found.setdefault(target, []).extend(names)
    return found


def _graph() -> dict[str, dict[str, list[str]]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def _layer(module: str) -> int:
    short = module.split(".", 1)[1] if "." in module else module
    top = short.split(".")[0]
    for i, (_, members) in enumerate(LAYERS):
        if short in members or top in members:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to "
                         "docs/architecture.md)")


def test_every_module_is_in_a_layer():
    for module in _modules():
        _layer(module)


def test_no_import_cycles_function_local_imports_included():
    graph = {m: set(edges) for m, edges in _graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_only_go_down_the_layers():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
              for m, edges in _graph().items() for t in edges if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def _same_subpackage(a: str, b: str) -> bool:
    """``a`` and ``b`` lie in the same subpackage (``mogsgd.fast.epoch`` may use the private
    helpers of ``mogsgd.fast``); top-level modules share nothing private."""
    pa, pb = a.split("."), b.split(".")
    return len(pa) > 2 and len(pb) >= 2 and pa[:2] == pb[:2]


def test_no_module_imports_another_modules_private_names():
    private = [f"{m} imports {name} from {t}" for m, edges in _graph().items()
               for t, names in edges.items() for name in names
               if name.startswith("_") and not name.startswith("__")
               and not _same_subpackage(m, t)]
    assert not private, "\n".join(private)


#: Names whose private attributes other modules may read: the module itself, and the
#: third-party objects whose documented API has underscores.
_OWN = {"self", "cls"}


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m != "mogsgd.estimator"))
def test_no_module_touches_the_estimators_private_state(module):
    """Outside ``estimator.py`` nothing reads or writes ``est._anything``: the estimator
    talks to the other layers through sources, solvers and public methods."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and node.value.id in {"est", "estimator", "model", "fitted", "gm"}):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, f"{module}: " + ", ".join(bad)


def test_only_the_dispatcher_looks_at_the_input_type():
    """The estimator and the solvers never branch on the type of ``X``."""
    for module in ("mogsgd.estimator", "mogsgd.mixture", "mogsgd.solvers.runs",
                   "mogsgd.solvers.support"):
        tree = ast.parse(_modules()[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                first = node.args[0]
                assert not (isinstance(first, ast.Name) and first.id in {"X", "data"}), \
                    f"{module} line {node.lineno} tests the type of the input"
            assert not (isinstance(node, ast.Name) and node.id in {"is_torch_tensor",
                                                                   "uses_torch",
                                                                   "is_dask_array"}), \
                f"{module} line {node.lineno} dispatches on the input kind"


@pytest.mark.parametrize("name", ["estimator.py", "mixture.py"])
def test_estimator_is_a_thin_layer(name):
    lines = (SRC / name).read_text(encoding="utf-8").count("\n")
    assert lines <= 505, f"{name} has {lines} lines; move logic to a lower layer"

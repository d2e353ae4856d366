"""The package's layers (README, "How the code is organised"): no module imports from a layer above
its own, and no module-level import cycle.  Read from the source with ``ast``; nothing is imported."""
import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "fairseq_dlm"
# bottom to top; a unit (top-level module or subpackage of fairseq_dlm) may import from its own layer's
# other units and from the layers below
LAYERS = [
    {"errors", "backbones"},
    {"diffusion", "metrics", "safe_load", "tools"},
    {"checkpoints", "compat"},
    {"data", "models", "optim", "criterions", "step_network", "reranking"},
    {"recipes", "generator"},
    {"convert", "tasks"},
    {"inference", "distillation"},
    {"hub", "evaluation"},
    {"demo", "harness"},
    {"__init__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
ENTRY = "fairseq_dlm.register"  # the plugin's registration, called lazily from anywhere


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        yield name, path, is_package


def _exists(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def _imports(name: str, path: Path, is_package: bool, missing=None):
    """``(target module, module-level?)`` for every import of a fairseq_dlm module in ``path``;
    imports of a module that does not exist are added to ``missing``."""
    package = name if is_package else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if missing is not None and module.startswith("fairseq_dlm") and not _exists(module):
                missing.append(f"{name} (line {node.lineno}): no module {module}")
            full = [f"{module}.{a.name}" for a in node.names]
            targets = [t if t == ENTRY or _exists(t) else module for t in full]
        else:
            continue
        for target in targets:
            if target.startswith("fairseq_dlm"):
                yield target, id(node) in top


def _unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_of_the_package_resolves():
    """Lazy imports inside functions too: a wrong relative import fails only when that code runs."""
    missing = []
    for name, path, is_package in _modules():
        list(_imports(name, path, is_package, missing))
    assert not missing, "\n".join(missing)


def test_every_unit_has_a_layer():
    units = {_unit(name) for name, _, _ in _modules()}
    assert units <= set(LAYER), f"no layer for {sorted(units - set(LAYER))}: add them to LAYERS and the README"


def test_no_module_imports_from_a_layer_above():
    upward = []
    for name, path, is_package in _modules():
        for target, _ in _imports(name, path, is_package):
            if target == ENTRY:
                continue
            if LAYER[_unit(target)] > LAYER[_unit(name)]:
                upward.append(f"{name} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_module_level_import_cycle():
    graph = {}
    for name, path, is_package in _modules():
        graph[name] = {t for t, top in _imports(name, path, is_package) if top and t != ENTRY}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)

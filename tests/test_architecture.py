"""The package's shape, checked from its source: one home per concept, no import cycles.

Built with :mod:`ast` from the files under ``causal_pp/`` (nothing is imported), so a cycle or a
stray function-local import fails here before it confuses anyone at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent / "causal_pp"

MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120  # body lines, docstring excluded

# Function-local imports of causal_pp's own modules, each for a documented reason.
LOCAL_IMPORTS_ALLOWED = {
    # facades: the concept's own module imports the class back at module level
    ("causal_pp.model", "fit"): "CausalModel.fit facade -> causal_pp.inference",
    ("causal_pp.posterior", "estimate"): "CausalPosterior.estimate facade -> causal_pp.estimation",
}
# the CLI defers every import so that `causal-pp --help` and `--version` answer at once
LOCAL_IMPORT_PACKAGES = ("causal_pp.cli",)

QUERY_CLASSES = {"Interventional", "ATE", "Counterfactual", "ETT", "PN", "PS", "PNS", "CausationQuery"}

# Private attributes of *other* libraries that causal_pp relies on, each with why.
THIRD_PARTY_PRIVATE = {
    "sys._getframe": "errors.warn: attribute a warning to the user's frame",
    "torch.jit._state._python_cu": "runtime.released_jit_traces: torch has no public way to free traces",
    "torch.jit._state": "runtime.released_jit_traces (as above)",
    "g._unconstrained_shapes": "inference.importance_target: the flat layout of an AutoContinuous guide",
    "self.g._unconstrained_shapes": "inference.importance_target (as above)",
    "_PYRO_STACK": "handlers.intervene: enclosing traces are rewritten after ChiRho's do",
    "_ensure_set": "identification.y0_adapter: the patched y0 method keeps y0's own argument handling",
    "_PEMaker": "runtime: a live JIT-compiled NUTS potential keeps its traces",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The causal_pp modules an ``import from`` statement loads."""
    if node.level:
        base = _package_of(module, path).split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    if not target.startswith("causal_pp"):
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in MODULES else target)
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements that run when the module is imported (not under TYPE_CHECKING, not in functions)."""
    out: list[ast.stmt] = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif _is_type_checking(node) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    stack.append(child)
    return out


def _import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for node in _top_level_imports(tree):
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(module, path, node)
            else:
                targets = [a.name for a in node.names if a.name.startswith("causal_pp")]
            for t in targets:
                # importing a.b.c first runs a and a.b -- unless the importer lives inside them
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    dep = ".".join(parts[:i])
                    if dep in MODULES and dep != module and dep not in own_packages:
                        g.add_edge(module, dep)
    return g


def test_the_package_has_no_import_cycles() -> None:
    g = _import_graph()
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:5])


def test_the_import_graph_is_not_empty() -> None:
    """The checker itself sees the package's imports (a broken resolver would pass vacuously)."""
    g = _import_graph()
    assert g.has_edge("causal_pp.estimation.interventional", "causal_pp.identification")
    assert g.has_edge("causal_pp.inference.fit", "causal_pp.posterior")
    assert g.number_of_edges() > 80


def test_function_local_imports_only_where_documented() -> None:
    stray = []
    for module, path in MODULES.items():
        if module.startswith(LOCAL_IMPORT_PACKAGES):
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                internal = (
                    isinstance(node, ast.ImportFrom)
                    and (node.level or (node.module or "").startswith("causal_pp"))
                ) or (
                    isinstance(node, ast.Import) and any(a.name.startswith("causal_pp") for a in node.names)
                )
                if internal and (module, fn.name) not in LOCAL_IMPORTS_ALLOWED:
                    stray.append(f"{module}.{fn.name} (line {node.lineno})")
    assert not stray, f"undocumented function-local imports of causal_pp modules: {stray}"


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    first = body[0]
    docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    start = body[1].lineno if docstring and len(body) > 1 else first.lineno
    return fn.end_lineno - start + 1  # type: ignore[operator]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_small(module: str) -> None:
    source = MODULES[module].read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{module} has {source.count(chr(10))} lines"
    long = [
        f"{fn.name}: {_body_lines(fn)} lines"
        for fn in ast.walk(ast.parse(source))
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(fn) > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_query_types_are_dispatched_through_tables_not_isinstance() -> None:
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "isinstance" and len(node.args) == 2:
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & QUERY_CLASSES:
                    found.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    assert not found, f"isinstance on query types outside the dispatch tables: {found}"


def test_no_module_reads_another_modules_private_names() -> None:
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and alias.name not in THIRD_PARTY_PRIVATE:
                        found.append(f"{module}: from {node.module} import {alias.name}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                owner = ast.unparse(node.value)
                text = ast.unparse(node)
                if owner in ("self", "cls") or text in THIRD_PARTY_PRIVATE:
                    continue
                found.append(f"{module}:{node.lineno} {text}")
    allowed_same_module = {"causal_pp.graph": {"other._key"}}  # __eq__ compares another instance
    found = [
        f
        for f in found
        if not any(f.startswith(m) and f.split(" ")[-1] in a for m, a in allowed_same_module.items())
    ]
    assert not found, f"private names read across modules: {found}"

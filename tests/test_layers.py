"""qmonit imports run one way: core <- sources, sinks <- jobs <- dev (README, Architecture).

Every import of every module under qmonit/ counts, at the top or inside a function, absolute
(`import qmonit.x`, `from qmonit.x import y`) or relative (`from ..core import schema`).
Top-level scripts, bench/, dashboards/ and tests/ may import anything.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "qmonit"
# A module may import its own layer and lower ranks only.
RANKS = {"core": 0, "sources": 1, "sinks": 1, "jobs": 2, "dev": 3}
# Layers of the same rank that must not import each other.
APART = {frozenset(("sources", "sinks"))}


def module_name(path, root=ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root=ROOT):
    """{module name: (path, is_package)} for every .py file under qmonit/."""
    return {module_name(p, root): (p, p.name == "__init__.py")
            for p in sorted((root / PACKAGE).rglob("*.py"))}


def imports_of(source, module, is_package, known):
    """The qmonit modules that source (the text of module) imports.

    `from X import a` counts as an import of X.a when that is a module in known, else of X.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[:-(node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def import_graph(root=ROOT):
    modules = package_modules(root)
    return {name: imports_of(path.read_text(encoding="utf-8"), name, is_package, modules)
            for name, (path, is_package) in modules.items()}


def layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def violations(graph):
    """(importer, imported, why) for every import that runs against the layers."""
    found = []
    for importer, targets in sorted(graph.items()):
        source_layer = layer(importer)
        if source_layer not in RANKS:
            found.append((importer, None, "module outside the layers"))
            continue
        for target in sorted(targets):
            target_layer = layer(target)
            if target_layer is None:
                found.append((importer, target, "imports the qmonit package itself"))
            elif target_layer not in RANKS:
                found.append((importer, target, "imports a module outside the layers"))
            elif RANKS[target_layer] > RANKS[source_layer]:
                found.append((importer, target, f"{source_layer} imports higher {target_layer}"))
            elif frozenset((source_layer, target_layer)) in APART:
                found.append((importer, target, f"{source_layer} imports {target_layer}"))
    return found


def cycles(graph):
    """The import cycles: strongly connected groups of more than one module, or a self-import."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# --- the package -----------------------------------------------------------------------------

def test_every_module_is_in_a_layer_and_imports_run_down():
    graph = import_graph()
    graph.pop(PACKAGE)  # qmonit/__init__.py: empty, checked below
    assert len(graph) > 20
    assert violations(graph) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_package_init_does_nothing():
    assert (ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8").strip() == ""


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert "qmonit.core.schema" in graph["qmonit.sinks.influx"]
    assert "qmonit.jobs.averages" in graph["qmonit.jobs.suspicious"]  # from . import x as y
    assert "qmonit.core.influxql" in graph["qmonit.core.schema"]      # inside a method
    assert "qmonit.dev.simulator" in graph["qmonit.dev.demo"]         # a subpackage


# --- the helpers fail on bad imports -------------------------------------------------------

KNOWN = {"qmonit.core.schema", "qmonit.sinks.influx", "qmonit.sources.panda", "qmonit.dev.demo",
         "qmonit.jobs.fetch", "qmonit.core", "qmonit.sinks", "qmonit.sources"}


def test_relative_and_absolute_imports_are_resolved():
    source = ("from ..sinks import influx\n"
              "from . import schema\n"
              "import qmonit.dev.demo\n"
              "import json\n"
              "def later():\n"
              "    from qmonit.sources.panda import fetch\n")
    assert imports_of(source, "qmonit.core.quoting", False, KNOWN) == {
        "qmonit.sinks.influx", "qmonit.core.schema", "qmonit.dev.demo", "qmonit.sources.panda"}
    assert imports_of("from .sim import Simulator\n", "qmonit.dev.simulator", True, KNOWN) == {
        "qmonit.dev.simulator.sim"}


def test_an_upward_import_is_a_violation():
    graph = {"qmonit.core.schema": {"qmonit.sinks.influx"},
             "qmonit.jobs.fetch": {"qmonit.dev.demo", "qmonit.core.schema"},
             "qmonit.sinks.influx": {"qmonit.core.schema"}}
    assert violations(graph) == [
        ("qmonit.core.schema", "qmonit.sinks.influx", "core imports higher sinks"),
        ("qmonit.jobs.fetch", "qmonit.dev.demo", "jobs imports higher dev"),
    ]


def test_sources_and_sinks_stay_apart():
    graph = {"qmonit.sinks.notify": {"qmonit.sources.panda"},
             "qmonit.sources.cric": {"qmonit.sources.panda", "qmonit.core.http"}}
    assert violations(graph) == [
        ("qmonit.sinks.notify", "qmonit.sources.panda", "sinks imports sources")]


def test_a_module_outside_the_layers_is_a_violation():
    graph = {"qmonit.helpers": set(), "qmonit.core.x": {"qmonit.helpers"}}
    assert violations(graph) == [
        ("qmonit.core.x", "qmonit.helpers", "imports a module outside the layers"),
        ("qmonit.helpers", None, "module outside the layers")]


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []

"""The house rules, checked: the recorder never imports the appliance, no import circles (at module
or function level), no class over 300 lines and no function over 120."""

import ast
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PACKAGES = ("capture", "appliance")
MAX_CLASS, MAX_FUNCTION = 300, 120


def modules():
    """{module name: path} of every Python module in the packages."""
    out = {}
    for pkg in PACKAGES:
        for d, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel[:-9] if rel.endswith(".__init__") else rel] = os.path.join(d, f)
    return out


MODULES = modules()


def imports(name, path):
    """The project modules ``name`` imports anywhere in it (function level too), resolved."""
    tree = ast.parse(open(path).read())
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        if isinstance(node, ast.ImportFrom) and _type_checking_only(tree, node):
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _type_checking_only(tree, node):
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING":
            if any(node is m for m in ast.walk(n)):
                return True
    return False


GRAPH = {m: imports(m, p) for m, p in MODULES.items()}


def test_the_recorder_never_imports_the_appliance():
    bad = {
        m: sorted(t for t in deps if t.startswith("appliance")) for m, deps in GRAPH.items() if m.startswith("capture")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_import_circles():
    """Tarjan's strongly connected components over module imports (a package's __init__ importing
    nothing of its own, a module importing its package is no circle)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def edges(m):
        return [t for t in GRAPH[m] if not m.startswith(t + ".")]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    assert comps == []


def _sizes():
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield m, node, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("kind,limit", [("class", MAX_CLASS), ("function", MAX_FUNCTION)])
def test_sizes(kind, limit):
    over = [
        f"{m}.{node.name}: {n} lines"
        for m, node, n in _sizes()
        if (isinstance(node, ast.ClassDef)) == (kind == "class") and n > limit
    ]
    assert over == []


def test_every_cython_module_has_its_stub_and_twin():
    import re

    setup = open(os.path.join(ROOT, "setup.py")).read()
    kernels = dict(re.findall(r'"(\w+)": "(capture\.[\w.]+_c)"', setup))
    assert set(kernels) == {f[:-4] for f in os.listdir(os.path.join(ROOT, "ext")) if f.endswith(".pyx")}
    for mod in kernels.values():
        assert os.path.exists(os.path.join(ROOT, *mod.split(".")) + ".pyi"), mod

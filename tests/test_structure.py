"""The package's shape: short files, `models` and `datasets` independent of each other, no import cycle, one
place where the model is constructed. Read from the source (AST), so a new file is checked too."""
import ast
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "projects", "desa2va")


def _modules():
    out = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def _imports(name, path, known):
    """Modules of the package that `name` imports (any import statement, lazy ones included)."""
    is_pkg = path.endswith("__init__.py")
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = ".".join(base[:len(base) - node.level + 1]) if node.level else ""
            mod = ".".join(x for x in (parent, node.module) if x)
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known}
    return found - {name}


def test_no_file_under_projects_is_longer_than_350_lines():
    long = {p: n for p in _modules().values() if (n := len(open(p).read().splitlines())) > 350}
    assert not long


def test_models_and_datasets_do_not_import_each_other():
    mods = _modules()
    for name, path in mods.items():
        deps = _imports(name, path, mods)
        for a, b in (("models", "datasets"), ("datasets", "models")):
            if name.startswith(f"projects.desa2va.{a}"):
                assert not [d for d in deps if d.startswith(f"projects.desa2va.{b}")], (name, deps)


def test_no_import_cycle():
    mods = _modules()
    graph = {n: _imports(n, p, mods) for n, p in mods.items()}
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_model_is_constructed_only_by_the_builder():
    out = subprocess.run(["git", "grep", "-n", "DeSa2VAModel(", "--", ".", ":!tests"], cwd=ROOT,
                         capture_output=True, text=True).stdout.splitlines()
    where = {line.split(":")[0] for line in out}
    assert where <= {"projects/desa2va/models/builder.py", "projects/desa2va/models/desa2va.py"}, out
    in_model = [line for line in out if line.startswith("projects/desa2va/models/desa2va.py")]
    assert all("class DeSa2VAModel(" in line for line in in_model)

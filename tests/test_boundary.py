"""The architectural line: ``deblur.core`` never needs Ray, and importing ``deblur`` loads nothing heavy."""

import ast
import os
import subprocess
import sys

import deblur

PACKAGE = os.path.dirname(deblur.__file__)
CORE = os.path.join(PACKAGE, "core")


def _files(folder: str) -> dict[str, str]:
    """Module name -> source file, for every module under ``folder``."""
    found = {}
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")]
                found[rel.replace(os.sep, ".").removesuffix(".__init__")] = path
    return found


def _imported(path: str) -> set[str]:
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):  # every import, also those inside functions
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_core_module_imports_ray_in_its_source():
    offenders = [m for m, path in _files(CORE).items() if "ray" in _imported(path)]
    assert offenders == []


def test_importing_every_core_module_loads_no_ray():
    modules = sorted(_files(CORE))
    assert len(modules) > 15 and "deblur.core.restore" in modules
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(n for n in sys.modules if n == 'ray' or n.startswith('ray.'))\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_the_ray_layer_does_import_ray():
    """The check above can fail: the Ray layer's modules are seen importing Ray."""
    assert "ray" in _imported(os.path.join(PACKAGE, "pipeline", "run.py"))
    assert "ray" in _imported(os.path.join(PACKAGE, "train", "trainer.py"))


def test_importing_deblur_loads_neither_torch_nor_ray():
    code = "import sys, deblur\nprint(sorted(n for n in ('torch', 'ray', 'cv2') if n in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def _deblur_imports(module: str, path: str, known: set[str]) -> set[str]:
    """The deblur modules ``module`` imports anywhere in its source (also inside functions)."""
    found = set()
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n in known and n != module)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circle_in_deblur():
    """Issue 23: config, degrade, models and training imported each other (config lazily, to validate)."""
    files = _files(PACKAGE)
    graph = {m: _deblur_imports(m, path, set(files)) for m, path in files.items()}
    assert "deblur.core.choices" in graph["deblur.core.degrade"]  # the graph is seen
    assert import_cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_settings_is_a_leaf_and_validating_a_config_loads_no_registry():
    files = _files(PACKAGE)
    assert _deblur_imports("deblur.core.choices", files["deblur.core.choices"], set(files)) == set()
    assert _deblur_imports("deblur.core.config", files["deblur.core.config"], set(files)) == {"deblur.core.choices",
                                                                                              "deblur.core.fashion_mnist"}
    code = ("import sys\nfrom deblur.core.config import TrainConfig, EvalConfig\n"
            "TrainConfig('d', 'o', model='unet', loss='psnr', degradation='motion:length=9+noise:sigma=0.01')\n"
            "EvalConfig('d', 'o', degradation='real')\n"
            "print(sorted(n for n in ('torch', 'cv2', 'deblur.core.degrade', 'deblur.core.models') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_modules_that_ray_tasks_import_load_no_torch():
    """Reading, decoding, listing and writing run in Ray tasks, each worker process importing the task's
    module: torch's import costs ~4 s of CPU there (the first training read took 18.7 s instead of 4.1)."""
    modules = ["deblur.train.datasets", "deblur.pipeline.stages", "deblur.pipeline.listing", "deblur.pipeline.sinks"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]

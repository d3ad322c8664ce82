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

"""The public Python API (``deblur.load``, ``Restorer``, ``BatchRestorer``): the README's example, run as is."""

import os
import re

import numpy as np

import deblur

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_examples() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_example_runs_and_de_blurs(ray_cluster, monkeypatch):
    blocks = readme_examples()
    assert len(blocks) == 2
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(blocks[0], "README.md (Python API)", "exec"), scope)
    assert scope["restored"].shape == scope["blurred"].shape == scope["sharp"].shape
    assert scope["psnr"](scope["restored"], scope["sharp"]) > scope["psnr"](scope["blurred"], scope["sharp"]) + 1
    exec(compile(blocks[1], "README.md (Python API, Ray Data)", "exec"), scope)
    rows = scope["rows"]
    assert len(rows) == 3 and all(r["restored"].shape == r["image"].shape for r in rows)
    assert all(r["restored"].dtype == np.uint8 for r in rows)


def test_the_api_names_are_exported_lazily():
    """``import deblur`` loads none of the API's modules (nor torch); the first use of a name loads it."""
    import subprocess
    import sys

    code = ("import sys, deblur; before = {'deblur.core.restore', 'torch'} & set(sys.modules); "
            "load = deblur.load; print(sorted(before), load.__module__, 'deblur.core.restore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["[]", "deblur.core.restore", "True"], out.stderr
    assert sorted(deblur.__all__) == ["BatchRestorer", "Restorer", "__version__", "load"]


def test_a_script_beside_a_clone_named_deblur_imports_the_installed_package(tmp_path):
    """Issue 39: a clone is a folder named ``deblur``; a script beside it imported that folder as a namespace
    package (``module 'deblur' has no attribute 'load'``). The code lives in ``src/deblur``: the installed
    package wins."""
    import subprocess
    import sys

    os.symlink(ROOT, tmp_path / "deblur", target_is_directory=True)
    (tmp_path / "script.py").write_text("import deblur\nprint(deblur.__file__, deblur.load.__name__)\n")
    out = subprocess.run([sys.executable, "script.py"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "load" and out.stdout.split()[0].endswith(os.path.join("deblur", "__init__.py"))

"""Shared by the job entrypoints: make the package importable from a ``--working-dir`` upload.

``jobs/`` itself comes off ``sys.path`` first: ``jobs/deblur.py`` would otherwise shadow the package.
"""

import os
import sys


REQUIRED = ("fsspec", "numpy", "pyarrow", "ray", "torch", "cv2")  # deblur's dependencies, as imported


def use_package() -> None:
    """Import ``deblur`` from the checkout this script is in (not ``jobs/deblur.py``); stop at once, naming
    this interpreter, when it lacks deblur's dependencies (a head started by a ``ray`` outside the venv runs
    ``python`` from its own PATH)."""
    import importlib.util

    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"deblur: error: this job runs {sys.executable}, which lacks {', '.join(missing)}: start the "
                 "head from the venv (scripts/local-head.sh) or give the venv's python as the entrypoint")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.path.insert(0, os.path.join(os.path.dirname(here), "src"))


def main(command: str) -> int:
    use_package()
    from deblur.cli import main as cli_main

    return cli_main([command, *sys.argv[1:]])

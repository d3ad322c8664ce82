"""Shared by the job entrypoints: make the package importable from a ``--working-dir`` upload.

``jobs/`` itself comes off ``sys.path`` first: ``jobs/deblur.py`` would otherwise shadow the package.
"""

import os
import sys


def use_package() -> None:
    """Import ``deblur`` from the checkout this script is in (not ``jobs/deblur.py``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.path.insert(0, os.path.dirname(here))


def main(command: str) -> int:
    use_package()
    from deblur.cli import main as cli_main

    return cli_main([command, *sys.argv[1:]])

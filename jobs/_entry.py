"""Shared by the job entrypoints: make the package importable from a ``--working-dir`` upload."""

import os
import sys


def main(command: str) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    from deblur.cli import main as cli_main

    return cli_main([command, *sys.argv[1:]])

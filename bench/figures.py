"""Printing a benchmark's figures: one aligned line each, or one JSON object (``--json``)."""

from __future__ import annotations

import json


def show(figures: dict[str, object], as_json: bool) -> None:
    """Print ``figures`` (name -> value; floats to 3 decimals), or as indented JSON."""
    if as_json:
        print(json.dumps(figures, indent=1))
        return
    width = max(map(len, figures)) + 2
    for key, value in figures.items():
        print(f"{key:{width}s} {value:.3f}" if isinstance(value, float) else f"{key:{width}s} {value}")

"""What ``deblur run`` checks before anything heavy: the roots, their overlap, the model's place.

Nothing here imports Ray or torch (tests/test_cli.py holds it to that), so the command line runs these
checks before it imports the pipeline, and a bad run fails in a fraction of a second instead of after the
3-4 s that Ray Data's and torch's imports take; :func:`deblur.pipeline.run.run` runs them too.
"""

from __future__ import annotations

import logging

from deblur.core import catalog
from deblur.core.config import PipelineConfig
from deblur.core.places import canonical, overlap, refuse_overlap
from deblur.core.storage import absolute, check_input, filesystem, is_process_local

log = logging.getLogger(__name__)


def roots(cfg: PipelineConfig) -> tuple[str, str]:
    """(input, output) of ``cfg``, checked, each in one spelling: absolute (workers may run elsewhere) and
    resolved, so that the manifest's records and the output's ownership do not depend on how a command names
    them (``..``, a link). Raises ValueError or FileNotFoundError when the run cannot be."""
    if is_process_local(filesystem(cfg.output)[0]):
        raise ValueError("memory:// cannot be an output: Ray workers run in other processes")
    check_input(cfg.input)
    source, output = canonical(absolute(cfg.input)), canonical(absolute(cfg.output))
    check_overlap(source, output, bool(cfg.input_column))
    return source, output


def check_overlap(source: str, output: str, parquet_input: bool) -> None:
    """Refuse (ValueError) an output that overlaps the input, by the filesystem's identity (the same folder,
    through a link or a bind mount too, or one inside the other): a run would read its own results, or
    write among the inputs. Parquet input in one file is the exception (deblur's parts cannot clash with
    it), and is said so."""
    how = overlap(source, output)
    fs, path = filesystem(source)
    if how and parquet_input and fs.isfile(path) and how != "the output is inside the input":
        log.info("the output %s holds the Parquet input %s; deblur's parts (deblur-part-*.parquet) cannot clash "
                 "with it, but a later run reading the folder would read them too", output, source)
        return
    refuse_overlap([source], output)


def model_uri(model: str | None) -> str | None:
    """``model`` as the driver resolves it: a public model's name as it is, a path made absolute. A path
    where nothing is raises FileNotFoundError (what lies there is checked when it is loaded)."""
    if not model or catalog.is_name(model):
        return model
    uri = absolute(model)
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"no checkpoint or weights file at {model}")
    return uri


def preflight(cfg: PipelineConfig) -> None:
    """Every check of ``cfg`` that needs neither Ray nor torch (the command line's, before importing them)."""
    roots(cfg)
    model_uri(cfg.model)

"""The pipeline (``deblur run``) with Ray Data: list (in the driver, before Ray) -> stages -> records.

``run`` is the only function that takes a :class:`PipelineConfig` apart. The listing
(:mod:`deblur.pipeline.listing`) names every input and its output; the stages (:mod:`deblur.pipeline.stages`)
read and decode (EXIF-upright, grey/RGB/RGBA, 8/16-bit), de-blur in tiles with the checkpoint loaded once
per actor, encode, write, and append each batch's manifest rows. Every input yields one record: a bad
file is an error row, never fatal; inputs already done (per the manifest) are skipped unless
``overwrite``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import posixpath
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Iterator
from datetime import datetime, timezone

import ray.data
from ray.data import ActorPoolStrategy

from deblur.core import checkpoint
from deblur.core.config import PipelineConfig
from deblur.core.formats import FORMATS
from deblur.core.progress import bar, shown
from deblur.core.storage import absolute, check_output, filesystem
from deblur.pipeline import checks, lease, sinks
from deblur.pipeline.listing import UNSIZED_BATCH, input_rows, list_inputs, parquet_rows, task_size
from deblur.pipeline.rows import InputRow
from deblur.pipeline.stages import FusedStage, ModelStage, decode_batch, write_batch
from deblur.runtime import cluster_is_ours, ensure_ray, require_gpus, ship_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """What a run did: counts by status, megapixels processed, the manifest written, the precisions the
    model ran in; ``seconds`` in all, ``startup`` of them before the first batch was written (Ray, actors,
    the model), and the throughput while results were written: ``steady_*`` count what was written after
    the first batch, over the ``steady_seconds`` from it to the last."""

    done: int
    skipped: int
    failed: int
    seconds: float
    megapixels: float
    output: str
    manifest: str
    startup: float = 0.0
    steady_seconds: float = 0.0
    steady_images: int = 0
    steady_megapixels: float = 0.0
    precisions: tuple[str, ...] = ()
    listed: int = 0  # inputs listed before Ray (0: a Parquet dataset, listed by Ray)
    listing: float = 0.0  # seconds the listing and the manifest's diff took

    def line(self) -> str:
        if self.steady_images and self.steady_seconds > 0:
            rate = (f"start-up {self.startup:.1f}s, then {self.steady_images / self.steady_seconds:.2f} images/s, "
                    f"{self.steady_megapixels / self.steady_seconds:.2f} Mpx/s")
        else:  # everything came at once: no start-up to tell apart
            total = max(self.seconds, 1e-9)
            rate = f"{self.done / total:.2f} images/s, {self.megapixels / total:.2f} Mpx/s with start-up"
        ran = f"; model in {', '.join(self.precisions)}" if self.precisions else ""
        return (f"{self.done} done, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f}s ({rate}{ran}) "
                f"-> {self.output} (manifest {self.manifest})"
                + (f"; {self.listed} inputs listed and diffed in {self.listing:.1f}s" if self.listed else ""))


class Progress:
    """Progress of a run: one bar on a terminal, else a line every ``every`` seconds; also keeps the
    counts, the precisions the model ran in, and when results were written (the first batch, the last),
    to give the throughput without start-up exactly as the manifest's times give it. Its time starts when it
    is made; the bar when the records start to be counted (:meth:`begin`), after the run's own lines."""

    def __init__(self, every: float = 10.0) -> None:
        self.t0 = time.time()
        self.status: Counter = Counter()
        self.precisions: Counter = Counter()
        self.megapixels = 0.0
        # when results were written: the first batch's time, the images and megapixels written at that time,
        # all processed so far, and the latest time (batches may land out of their write order)
        self.first, self.at_first, self.latest = float("inf"), (0, 0.0), 0.0
        self.processed = (0, 0.0)
        self.every, self.last = every, self.t0
        self.bar = None
        self.inputs, self.listing = 0, 0.0

    def listed(self, inputs: int, skipped: int, seconds: float) -> None:
        """The driver listed ``inputs`` in ``seconds``, of which ``skipped`` were done before."""
        self.inputs, self.listing = inputs, seconds
        self.status["skipped"] += skipped
        log.info("%d inputs listed and diffed against the manifest in %.1fs: %d new or changed", inputs, seconds,
                 inputs - skipped)

    def begin(self) -> None:
        """Draw the bar from now on, where standard error is a terminal."""
        self.bar = bar(desc="deblur run", unit=" images") if shown() else None

    def add(self, records: dict) -> None:
        """Count a batch of :class:`~deblur.pipeline.rows.Record` columns."""
        status = list(records["status"])
        self.status.update(status)
        self.precisions.update(p for p in records["precision"] if p)
        self.megapixels += float(sum(records["megapixels"]))
        for t, m, st in zip(records["written"], records["megapixels"], status):
            if st != "skipped":
                self._written(float(t), float(m))
        if self.bar is not None:
            self.bar.set_postfix(failed=self.status["failed"], skipped=self.status["skipped"], refresh=False)
            self.bar.update(len(status))
        elif time.time() - self.last >= self.every:
            self.last = time.time()
            log.info("%d done, %d skipped, %d failed so far (%.0fs)", self.status["done"], self.status["skipped"],
                     self.status["failed"], self.last - self.t0)

    def _written(self, t: float, megapixels: float) -> None:
        self.processed = (self.processed[0] + 1, self.processed[1] + megapixels)
        if t < self.first:
            self.first, self.at_first = t, (0, 0.0)
        if t == self.first:
            self.at_first = (self.at_first[0] + 1, self.at_first[1] + megapixels)
        self.latest = max(self.latest, t)

    def summary(self, output: str, manifest: str) -> Summary:
        if self.bar is not None:
            self.bar.close()
        end = time.time()
        first = self.first if self.processed[0] else end
        later = self.processed[0] - self.at_first[0]  # written after the first batch
        return Summary(self.status["done"], self.status["skipped"], self.status["failed"], end - self.t0,
                       self.megapixels, output, manifest, startup=first - self.t0,
                       steady_seconds=self.latest - first if later else 0.0, steady_images=later,
                       steady_megapixels=self.processed[1] - self.at_first[1],
                       precisions=tuple(sorted(self.precisions)), listed=self.inputs, listing=self.listing)


def run(cfg: PipelineConfig) -> Summary:
    """De-blur every image under ``cfg.input`` into ``cfg.output``; returns the summary."""
    source, output = checks.roots(cfg)  # bad input, a memory:// output, overlap: before Ray starts
    ckpt = checkpoint.resolve(checks.model_uri(cfg.model))
    config = checkpoint.load(ckpt)[1]  # fail fast, in the driver, on an unreadable checkpoint
    check_output(output)  # last: it writes (a probe), so nothing is left behind by a refused run
    model = checkpoint.model_id(ckpt, config)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    with lease.Lease(output, run_id, inside=False) as held:
        nonce = sinks.output_nonce(output)
        known = sinks.known(output, cfg.verify_outputs, cfg.detect_changes == "content", model, cfg.format,
                            cfg.overwrite, nonce)
        held.refuse_inside(known.existing)  # runs inside this output, from the listing known() made
        progress = Progress()
        todo = None if cfg.input_column else new_inputs(source, output, cfg.format, known, progress)
        if cfg.input_column or todo:  # a Parquet dataset (Ray lists it), or something new: only now Ray
            ensure_ray()
            if cfg.gpu:
                require_gpus()
            per_task = ((cfg.batch_size or UNSIZED_BATCH) if cfg.input_column
                        else task_size(todo, cfg.batch_size, cfg.workers))
            with small_blocks(per_task):
                if cfg.input_column:
                    roots = tuple(absolute(r) for r in cfg.read_roots)
                    ds = parquet_rows(source, cfg.input_column, output, cfg.format, known, roots,
                                      (cfg.max_megapixels, cfg.max_pixels_per_byte))
                else:
                    ds = input_rows(todo, per_task)
                sink = {"fmt": cfg.format, "output": output, "run": run_id, "model_id": model, "nonce": nonce}
                ds = add_stages(ds, cfg, per_task, ckpt, sink, source)
            try:
                count(ds, progress)
            except BaseException as e:
                ds = None  # the dataset holds its executor, which holds the actors
                release(e)
                raise
        if FORMATS[cfg.format].table:
            sinks.commit_parquet(output, nonce)  # before compaction: every record still names its part
        manifest = sinks.compact_manifest(output, run_id, nonce)
    return progress.summary(cfg.output, manifest)


def new_inputs(source: str, output: str, fmt: str, known: sinks.Known, progress: Progress) -> list[InputRow]:
    """The inputs under ``source`` that need work (those the manifest records as done at their version are
    counted as skipped in ``progress``, and go no further), listed and diffed here, before Ray; ``progress``
    notes how long that took."""
    t0 = time.time()
    rows = list_inputs(source, output, fmt, known)
    todo = [r for r in rows if not r["skip"] or known.by_content]  # by content: only a read can tell
    progress.listed(len(rows), len(rows) - len(todo), time.time() - t0)
    return todo


def count(ds: ray.data.Dataset, progress: Progress) -> None:
    """Run ``ds`` and count its records in ``progress`` as they land, naming each failed input. The first
    batch's arrival closes the start-up's last phase (model actors started, the model loaded), and says so."""
    t0 = time.monotonic()
    for i, batch in enumerate(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)):
        if i == 0:  # before the bar, which the line would break
            log.info("model: actors up, model loaded, first results in %.1fs", time.monotonic() - t0)
            progress.begin()
        progress.add(batch)
        for path, st, err in zip(batch["path"], batch["status"], batch["error"]):
            if st == "failed":
                log.warning("failed: %s: %s", path, err)


def release(error: BaseException) -> None:
    """Let a failed run's actors go now. Ray Data drops its handles to them and leaves their end to reference
    counting, but the frames in ``error``'s traceback (which a caller may keep) hold its executor, so the
    actors and their CPUs would outlive the run and a next run in this process would wait for them forever."""
    traceback.clear_frames(error.__traceback__)
    gc.collect()


ROW_BYTES = 256  # about the size of a listing row (two URLs and a version) or of a record


@contextlib.contextmanager
def small_blocks(rows: int) -> Iterator[None]:
    """While the run's datasets are built (they keep the setting), Ray Data cuts every task's output into
    blocks of about ``rows`` rows (by bytes: :data:`ROW_BYTES` a row): an actor task then takes about
    ``batch_size`` inputs, not a sub-folder's whole listing, and its records land as soon as it ends, so
    progress and the summary's rate follow the writes. (One-row blocks would cost ~50 ms each in Ray Data's
    executor: 2,000 tiny files took 99 s instead of 3.) The setting is the whole run's: in the split stages
    (``--gpu``) a decoded image is far over ``rows * ROW_BYTES``, so each goes in a block of its own; the
    split pipeline's ~20 Mpx/s on an H200 (model alone ~240) may come from that, not yet shown (README,
    Benchmark). The driver's own context is restored after."""
    ctx = ray.data.DataContext.get_current()
    before = ctx.target_max_block_size
    ctx.target_max_block_size = rows * ROW_BYTES
    try:
        yield
    finally:
        ctx.target_max_block_size = before


def add_stages(ds: ray.data.Dataset, cfg: PipelineConfig, per_task: int, ckpt: str, sink: dict,
               source: str) -> ray.data.Dataset:
    """decode -> model -> write, ``per_task`` rows a task: separate stages when the model runs on GPUs
    (``--stages split``, the default with ``--gpu``), one fused CPU actor otherwise; see
    :mod:`deblur.pipeline.stages`."""
    model = {"checkpoint_uri": ckpt, "gpu": cfg.gpu, "options": cfg.restore().to_dict(),
             "model": cfg.model, "shipped": ship_model(cfg.model)}
    root = source if not filesystem(source)[0].isfile(filesystem(source)[1]) else posixpath.dirname(source)
    decode = {"root": root, "max_megapixels": cfg.max_megapixels, "max_pixels_per_byte": cfg.max_pixels_per_byte,
              "multi_frame": cfg.multi_frame, "measure": FORMATS[cfg.format].table}
    fused = cfg.stages == "fused" or (cfg.stages == "auto" and not cfg.gpu)
    whole = fused and not cfg.gpu and cluster_is_ours()  # a local cluster of its own: one node, all the run's
    cpus = actor_cpus(cfg.worker_cpus, cfg.workers, ray.cluster_resources().get("CPU", 0.0) if whole else 0.0)
    why = ("as asked" if cfg.worker_cpus else "the local cluster is this run's" if whole
           else "the model runs on its GPU" if cfg.gpu and fused else "CPUs left to decode and write" if not fused
           else "the cluster is shared; --worker-cpus N takes more")
    log.info("ray: %d model actor%s, %d CPU%s each (%s)", cfg.workers, "s"[:cfg.workers > 1], cpus,
             "s"[:cpus > 1], why)
    actors = {"compute": ActorPoolStrategy(size=cfg.workers), "num_gpus": 1 if cfg.gpu else 0, "num_cpus": cpus,
              "batch_size": per_task, "batch_format": "numpy",
              **({"resources": cfg.actor_resources} if cfg.actor_resources else {}),
              **({"memory": cfg.worker_memory * 1e9} if cfg.worker_memory else {})}
    if fused:
        return ds.map_batches(FusedStage, fn_constructor_kwargs={**model, "sink": sink, "decode": decode}, **actors)
    ds = ds.map_batches(decode_batch, fn_kwargs=decode, batch_size=per_task, batch_format="numpy")
    ds = ds.map_batches(ModelStage, fn_constructor_kwargs=model, **actors)
    return ds.map_batches(write_batch, fn_kwargs=sink, batch_size=per_task, batch_format="numpy")


def actor_cpus(requested: int, workers: int, own_cpus: float) -> int:
    """CPUs for each of ``workers`` model actors (Ray reserves them; the actor runs as many torch threads):
    ``requested``, else ``own_cpus`` shared among them, where the run has a local cluster to itself and its
    actors do all the work on CPUs (fused stages, no GPU); else 1, Ray's own default: on a cluster it
    attached to, other jobs may need the CPUs (taking all that were free starved a training job's data
    tasks), and split stages need CPUs for their decode and write tasks."""
    if requested:
        return requested
    return max(1, int(own_cpus) // workers)

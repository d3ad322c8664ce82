"""Issue 36's invariants as properties (Hypothesis), over generated trees: links inside, outside and into the
output, aliases of the input (a second path to the same folder), FIFOs, foreign files at every kind of name
deblur writes, key spellings across case, Unicode forms and empty or ``.`` segments.

After anything: the input tree is byte-identical, no foreign file changed, every write stayed in its root,
no read blocked, every entry got exactly one record."""

import os
import shutil
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deblur.core.image import encode
from deblur.core.places import Escape, open_local, overlap, write_local
from deblur.pipeline import sinks
from deblur.pipeline.naming import fold, output_keys
from tests.conftest import textured
from tests.hostile.tree import deblur_run, records, snapshot

NAMES = st.sampled_from(["a", "b", "sub", "a.png", "A.PNG", "x.png", "straße.png", "STRASSE.png", "σ.png",
                         "ς.png", "e\u0301.png", "\u00e9.png", "_manifest", ".h.png", "deblur-part-" + "0" * 20 +
                         ".parquet"])
KINDS = st.sampled_from(["foreign", "folder", "link-input", "link-input-file", "link-outside", "alias", "fifo"])
ENTRIES = st.lists(st.tuples(st.lists(NAMES, min_size=1, max_size=3), KINDS), max_size=8)
HOSTILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _input(base) -> tuple:
    src, outside = base / "in", base / "outside"
    for folder in (src / "sub", outside):
        folder.mkdir(parents=True)
    (src / "a.png").write_bytes(b"input a")
    (src / "sub" / "b.png").write_bytes(b"input b")
    (outside / "o.png").write_bytes(b"outside")
    return src, outside


def _hostile(out, src, outside, entries) -> None:
    """The generated entries, where their path is free: foreign files, folders, links, aliases, FIFOs."""
    for parts, kind in entries:
        path = os.path.join(out, *parts)
        if os.path.lexists(path) or not os.path.isdir(os.path.dirname(path)) or os.path.islink(os.path.dirname(path)):
            continue
        if kind == "foreign":
            with open(path, "wb") as f:
                f.write(b"theirs " + path.encode("utf-8", "surrogateescape"))
        elif kind == "folder":
            os.mkdir(path)
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            target = {"link-input": src / "sub", "link-input-file": src / "a.png", "link-outside": outside,
                      "alias": src}[kind]
            os.symlink(target, path)


def _timely(seconds, fn, *args):
    box = {}

    def call():
        try:
            box["value"] = fn(*args)
        except OSError as e:
            box["error"] = e

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{fn.__name__}{args} blocked"
    return box


@HOSTILE
@given(entries=ENTRIES, writes=st.lists(st.tuples(st.lists(NAMES, min_size=1, max_size=3), st.booleans()),
                                        min_size=1, max_size=8))
def test_writes_stay_in_their_root_and_never_replace_a_file_they_were_not_given(tmp_path_factory, entries, writes):
    base = tmp_path_factory.mktemp("w")
    src, outside = _input(base)
    out = base / "out"
    out.mkdir()
    _hostile(out, src, outside, entries)
    before_in, before_out, before_outside = snapshot(src), snapshot(out), snapshot(outside)
    ours: dict[str, bytes] = {}
    for i, (parts, again) in enumerate(writes):
        path = os.path.join(out, *parts)
        data = f"ours {i}".encode()
        replace = again and path in ours  # only what this test wrote itself is given to replace
        box = _timely(10, write_local, str(out), path, data, replace)
        if "error" in box:
            assert isinstance(box["error"], (Escape, FileExistsError, IsADirectoryError, NotADirectoryError,
                                             FileNotFoundError, OSError))
            continue
        real = os.path.realpath(path)
        assert real.startswith(str(out) + "/") and not os.path.islink(path)
        ours[path] = data
    assert snapshot(src) == before_in and snapshot(outside) == before_outside
    now = snapshot(out)
    for rel, (kind, content) in before_out.items():  # every foreign entry as it was
        assert now.get(rel) == (kind, content), rel
    for path, data in ours.items():
        with open(path, "rb") as f:
            assert f.read() == data
    shutil.rmtree(base)


@HOSTILE
@given(entries=ENTRIES)
def test_reads_open_only_regular_files_inside_the_root_and_never_block(tmp_path_factory, entries):
    base = tmp_path_factory.mktemp("r")
    src, outside = _input(base)
    _hostile(src, base / "unused", outside, entries)  # links out, aliases, FIFOs: inside the input now
    for folder, dirs, files in os.walk(src):
        for name in dirs + files:
            path = os.path.join(folder, name)
            box = _timely(10, open_local, str(src), path)
            if "value" in box:
                fd, info = box["value"]
                os.close(fd)
                assert os.path.realpath(path).startswith(str(src) + "/") and info.st_size >= 0
                assert not os.path.isdir(path)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    assert overlap(str(src), str(src / "alias")) or not os.path.lexists(src / "alias")
    shutil.rmtree(base)


SEGMENTS = st.sampled_from(["a", "A", "ß", "SS", "ss", "σ", "ς", "Σ", "e\u0301", "\u00e9", "É", ".", "", "x y",
                            "photo#1", "-0123456789"])


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.lists(SEGMENTS, min_size=1, max_size=3).map(lambda p: "/".join(p) + ".png"), max_size=12),
       foreign=st.lists(st.sampled_from(["a.png", "A.PNG", "ss.png", "e\u0301.png", "b/a.png"]), max_size=3))
def test_output_keys_never_meet_under_folding_nor_take_a_foreign_name(keys, foreign):
    taken = {fold(k): sinks.FOREIGN for k in foreign}
    got = output_keys(keys, "png", taken)
    given_keys = [k for k in got if k]
    assert len({fold(k) for k in given_keys}) == len(given_keys)
    assert not {fold(k) for k in given_keys} & set(taken)
    assert all(not k.startswith("/") and ".." not in k.split("/") and "" not in k.split("/") for k in given_keys)


@pytest.mark.ray
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=ENTRIES, names=st.lists(st.lists(NAMES, min_size=1, max_size=2), min_size=1, max_size=5))
def test_a_run_over_a_hostile_tree_keeps_the_invariants(ray_cluster, tmp_path_factory, seed_checkpoint, entries,
                                                        names):
    base = tmp_path_factory.mktemp("run")
    src, outside = _input(base)
    for i, parts in enumerate(names):
        path = os.path.join(src, *parts)
        if not os.path.lexists(path) and os.path.isdir(os.path.dirname(path)):
            with open(path, "wb") as f:
                f.write(encode(textured(12, 16, 3, seed=i), "png"))
    out = base / "out"
    out.mkdir()
    _hostile(out, src, outside, entries)
    before_in, before_out, before_outside = snapshot(src), snapshot(out), snapshot(outside)
    for _ in range(2):
        try:
            deblur_run(src, out, seed_checkpoint)
            refused = ""
        except ValueError as e:  # the output's own _manifest taken by something else: refused before any work
            refused = str(e)
            assert "_manifest" in refused and [p for p, _ in entries if p[0] == "_manifest"], refused
        assert snapshot(src) == before_in and snapshot(outside) == before_outside
        now = snapshot(out)
        assert all(now.get(rel) == entry for rel, entry in before_out.items()), "a foreign entry changed"
        entries_in = [os.path.join(f, n) for f, d, fs in os.walk(src) for n in fs + [x for x in d if os.path.islink(
            os.path.join(f, x))]]
        assert refused or sorted(records(out)) == sorted(entries_in)  # every entry exactly one record
    shutil.rmtree(base)

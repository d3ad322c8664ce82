"""Issue 36, cases 1-10: writes never reach the input, never replace or delete a file deblur did not write.
Each test reproduces one case of the campaign as a user would meet it."""

import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deblur.cli import main
from deblur.core.image import decode
from deblur.pipeline import lease
from tests.conftest import textured, write_image
from tests.hostile.tree import deblur_run, records, snapshot


def _photos(folder, names, seed=0):
    for i, name in enumerate(names):
        write_image(folder / name, textured(20, 24, 3, seed=seed + i))


def test_1_a_folder_of_the_output_linked_into_the_input_is_not_written_through(ray_cluster, tmp_path,
                                                                               seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    _photos(src, ["a.png", "sub/b.png", "sub/c.png"])
    out.mkdir()
    os.symlink(src / "sub", out / "sub")
    before = snapshot(src)
    s = deblur_run(src, out, seed_checkpoint)
    assert snapshot(src) == before  # the input untouched
    failed = {os.path.basename(k): r["error"] for k, r in records(out).items() if r["status"] == "failed"}
    assert s.done == 1 and sorted(failed) == ["b.png", "c.png"] and "symbolic link" in failed["b.png"]


@pytest.mark.parametrize("command", ["degrade", "eval"])
def test_2_degrade_and_eval_refuse_an_output_overlapping_their_input(tmp_path, seed_checkpoint, capsys, command):
    src = tmp_path / "photos"
    _photos(src, ["a.png", "sub/b.png"])
    before = snapshot(src)
    for out in (src, src / "degraded", src / "sub"):
        args = (["degrade", "--degradation", "gaussian"] if command == "degrade"
                else ["eval", "--model", seed_checkpoint, "--degradation", "gaussian"])
        flag = "--input" if command == "degrade" else "--data"
        assert main([*args, flag, str(src), "--output", str(out)]) == 2
        assert "overlap" in capsys.readouterr().err
    assert snapshot(src) == before


def test_3_a_bind_mount_or_link_to_the_input_is_the_input(tmp_path, seed_checkpoint, capsys):
    src = tmp_path / "in"
    _photos(src, ["a.png"])
    os.symlink(src, tmp_path / "link")
    aliases = [tmp_path / "link", tmp_path / "link" / "out"]
    bound = tmp_path / "alias"
    bound.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(src), str(bound)], capture_output=True).returncode == 0
    if mounted:
        aliases += [bound, bound / "out"]
    try:
        before = snapshot(src)
        for alias in aliases:
            assert main(["run", "--model", seed_checkpoint, "--input", str(src), "--output", str(alias)]) == 2
            assert "overlap" in capsys.readouterr().err
        assert snapshot(src) == before
    finally:
        if mounted:
            subprocess.run(["umount", str(bound)], check=True)
    if not mounted:
        pytest.skip("bind mounts need privileges here; links checked")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_4_a_foreign_file_at_an_output_name_is_kept_and_the_input_named_anew(ray_cluster, tmp_path, bucket,
                                                                             seed_checkpoint, where):
    import fsspec

    src = tmp_path / "in"
    _photos(src, ["a.png", "b.png"])
    out = str(tmp_path / "out") if where == "local" else f"{bucket}/out"
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root}/a.png", b"mine")
    s = deblur_run(src, out, seed_checkpoint)
    fs.invalidate_cache()
    assert fs.cat_file(f"{root}/a.png") == b"mine" and s.done == 2
    output = records(out)[str(src / "a.png")]["output"]
    assert output != f"{out}/a.png" and decode(fs.cat_file(output)).shape == (20, 24, 3)
    assert deblur_run(src, out, seed_checkpoint).skipped == 2  # its new name is recorded
    assert fs.cat_file(f"{root}/a.png") == b"mine"


def test_5_foreign_parquet_shaped_like_our_parts_is_left_alone(ray_cluster, tmp_path, seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    _photos(src, ["a.png", "b.png"])
    out.mkdir()
    pq.write_table(pa.table({"path": ["theirs.png"], "n": [1]}), out / f"deblur-part-{'a' * 20}.parquet")
    pq.write_table(pa.table({"x": [2]}), out / f"deblur-part-{'b' * 20}.parquet")
    (out / f"deblur-part-{'c' * 20}.parquet").write_bytes(b"not parquet")
    before = snapshot(out)
    for _ in range(2):  # the second run's commit sees the first run's parts and the foreign ones
        s = deblur_run(src, out, seed_checkpoint, "parquet", overwrite=True)
        assert s.done == 2
    assert {k: v for k, v in snapshot(out).items() if k in before} == before


def test_7_a_root_spelled_with_dots_keeps_the_manifests_ownership(ray_cluster, tmp_path, seed_checkpoint,
                                                                  monkeypatch):
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    _photos(first, ["a.png"])
    _photos(second, ["a.png"], seed=5)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    deblur_run(first, "../out", seed_checkpoint)
    ours = (out / "a.png").read_bytes()
    s = deblur_run(second, out, seed_checkpoint)  # another input: its a.png gets another name
    assert s.done == 1 and (out / "a.png").read_bytes() == ours
    assert deblur_run(first, "../elsewhere/../out", seed_checkpoint).skipped == 1  # not redone


def test_8_overwrite_redoes_this_sources_outputs_only(ray_cluster, tmp_path, seed_checkpoint):
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    _photos(first, ["a.png"])
    _photos(second, ["a.png"], seed=5)
    deblur_run(first, out, seed_checkpoint)
    ours = (out / "a.png").read_bytes()
    s = deblur_run(second, out, seed_checkpoint, overwrite=True)
    assert s.done == 1 and (out / "a.png").read_bytes() == ours  # the first source's result stands
    assert deblur_run(first, out, seed_checkpoint, overwrite=True).done == 1  # its own, redone in place
    assert records(out)[str(first / "a.png")]["output"] == str(out / "a.png")


def test_9_the_lease_covers_outputs_nested_either_way(tmp_path, seed_checkpoint):
    out = tmp_path / "out"
    _photos(tmp_path / "in", ["a.png"])
    with lease.Lease(str(out / "sub"), "inner"):  # a run inside: the run on out finds it in its listing
        with pytest.raises(ValueError, match="lies inside this run's output"):
            deblur_run(tmp_path / "in", out, seed_checkpoint)
        assert not (out / "_manifest" / "_lease.json").exists()  # given up
    with lease.Lease(str(out), "outer"):
        with pytest.raises(ValueError, match="contains this run's output"):
            with lease.Lease(str(out / "sub"), "inner"):
                pass
    with lease.Lease(str(out / "sub" / "deeper"), "inner"):
        with pytest.raises(ValueError, match="lies inside this run's output"):
            with lease.Lease(str(out), "outer"):
                pass
    with lease.Lease(str(out), "after"), lease.Lease(str(tmp_path / "beside"), "beside"):
        pass  # both free again; unrelated outputs never conflict


def test_10_foreign_files_in_the_manifest_folder_are_neither_read_nor_deleted(ray_cluster, tmp_path,
                                                                              seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    _photos(src, ["a.png"])
    (out / "_manifest" / "notes").mkdir(parents=True)
    pq.write_table(pa.table({"source": ["/x.png"], "output": ["/o.png"], "status": ["done"]}),
                   out / "_manifest" / "notes" / "part-x-0123456789ab.parquet")
    pq.write_table(pa.table({"source": ["/y.png"], "status": ["done"]}), out / "_manifest" / "theirs.parquet")
    pq.write_table(pa.table({"n": [1]}), out / "_manifest" / "part-r-0123456789ab.parquet")  # our name, not ours
    before = {k: v for k, v in snapshot(out / "_manifest").items()}
    assert deblur_run(src, out, seed_checkpoint).done == 1
    assert sorted(records(out)) == [str(src / "a.png")]  # read nothing of theirs
    after = snapshot(out / "_manifest")
    assert {k: after[k] for k in before} == before  # deleted nothing of theirs

from deblur.pipeline.listing import TASKS_PER_ACTOR, rows_per_task
from deblur.pipeline.sinks import Known


def test_skip_needs_the_same_version_and_an_existing_output():
    known = Known({"/in/a.png": ("10:1", "/out/a.png"), "/in/old.png": ("", "/out/old.png")},
                  frozenset({"/out/a.png"}))
    assert known.skip("/in/a.png", "10:1") and not known.skip("/in/a.png", "11:2")
    assert not known.skip("/in/old.png", "5:5")  # recorded without a version, but its output is gone
    assert Known(known.done, None).skip("/in/old.png", "5:5") and not known.skip("/in/new.png", "1:1")


def test_by_content_the_stage_decides_and_is_told_the_recorded_version():
    known = Known({"/in/a.png": ("sha256:ab", "/out/a.png")}, frozenset({"/out/a.png"}), by_content=True)
    assert not known.skip("/in/a.png", "sha256:ab")
    assert known.recorded("/in/a.png") == "sha256:ab" and known.recorded("/in/new.png") == ""
    assert Known(known.done, frozenset(), by_content=True).recorded("/in/a.png") == ""  # output lost: redo
    assert Known(known.done).recorded("/in/a.png") is None


def test_taken_keys_are_relative_to_the_output_and_ignore_case():
    known = Known(owners={"/out/Sub/A.png": "/in/x", "/elsewhere/b.png": "/in/y"})
    assert known.taken("/out") == {"sub/a.png": "/in/x"}


def test_a_small_run_is_cut_finer_so_the_actors_finish_together():
    assert rows_per_task(20, 4, 2) == 1  # 20 photos, two actors: one a task (4 a task left one actor idle)
    assert rows_per_task(2 * TASKS_PER_ACTOR * 4, 4, 2) == 4  # enough for every actor: the batch size
    assert rows_per_task(2000, 64, 2) == 64 and rows_per_task(10_000, 4, 100) == 4
    assert rows_per_task(0, 4, 1) == rows_per_task(3, 4, 8) == 1
    for listed in range(1, 200):  # never above the batch size, and every actor has TASKS_PER_ACTOR where it can
        per = rows_per_task(listed, 8, 3)
        assert 1 <= per <= 8 and (per == 1 or -(-listed // per) >= 3 * TASKS_PER_ACTOR)


def test_by_default_a_task_takes_about_a_megabyte_of_input():
    from deblur.pipeline.listing import BATCH_BYTES, MAX_BATCH, UNSIZED_BATCH, by_bytes, task_size

    assert by_bytes(2000, 2000 * 3_000) == MAX_BATCH  # thumbnails: as many as a task may take
    assert by_bytes(100, 100 * 300_000) == BATCH_BYTES // 300_000 == 3  # photos: a few
    assert by_bytes(10, 10 * 50_000_000) == 1 and by_bytes(5, 0) == UNSIZED_BATCH
    rows = [{"version": f"{3_000}:17.5"} for _ in range(5000)]
    assert task_size(rows, 0, 2) == MAX_BATCH and task_size(rows, 16, 2) == 16  # --batch-size still wins
    assert task_size(rows[:100], 0, 2) == 100 // (2 * TASKS_PER_ACTOR)  # and small runs are still cut finer

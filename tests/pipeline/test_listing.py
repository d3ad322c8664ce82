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

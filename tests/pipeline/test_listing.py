import pytest

from deblur.pipeline import listing
from deblur.pipeline.sinks import Known


def _keys(rels, known=Known(), fmt="png"):
    return listing.output_keys(rels, ["/in/" + r for r in rels], fmt, "/out", known)


def test_inputs_sharing_a_stem_keep_their_extensions():
    assert _keys(["a/img1.png", "a/img1.bmp", "b/img1.png", "solo.jpg"]) == [
        "a/img1.png.png", "a/img1.bmp.png", "b/img1.png", "solo.png"]


@pytest.mark.parametrize("names", [["photo#1.png", "photo_1.png"], ["dir\\x.png", "dir/x.png"],
                                   ["we ird?.png", "we ird_.png"], ["../../x/b.png", "x/b.png"]])
def test_names_changed_by_making_them_safe_never_meet_safe_ones(names):
    keys = _keys(names)
    assert len(set(keys)) == 2 and keys[1] == names[1].replace("\\", "/")
    assert keys[0].startswith(names[1].rsplit(".", 1)[0] + "-") and ".." not in keys[0]
    assert keys == _keys(names)  # deterministic


def test_a_key_recorded_as_another_sources_output_is_not_reused():
    known = Known(owners={"/out/sub/a.png": "/in/sub/a.jpg"})
    assert _keys(["sub/a.png"], known)[0].startswith("sub/a-")
    assert _keys(["sub/a.jpg"], known) == ["sub/a.png"]  # its own output: the same key again


def test_non_images_do_not_make_images_keep_their_extension():
    assert _keys(["a.png", "a.txt"])[0] == "a.png"


def test_skip_needs_the_same_version_and_an_existing_output():
    known = Known({"/in/a.png": ("10:1", "/out/a.png"), "/in/old.png": ("", "/out/old.png")},
                  frozenset({"/out/a.png"}))
    assert known.skip("/in/a.png", "10:1") and not known.skip("/in/a.png", "11:2")
    assert not known.skip("/in/old.png", "5:5")  # recorded without a version, but its output is gone
    assert Known(known.done, None).skip("/in/old.png", "5:5") and not known.skip("/in/new.png", "1:1")

"""Output names: never the same for two inputs, whatever they are called (property-based, Hypothesis)."""

import posixpath
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deblur.core.config import IMAGE_FORMATS
from deblur.pipeline.naming import output_keys, tag


def _keys(rels, fmt="png", taken=None):
    return output_keys(rels, fmt, taken, ["/in/" + r for r in rels])


def test_inputs_sharing_a_stem_keep_their_extensions():
    assert _keys(["a/img1.png", "a/img1.bmp", "b/img1.png", "solo.jpg"]) == [
        "a/img1.png", "a/img1.bmp.png", "b/img1.png", "solo.png"]


def test_the_findings_of_the_hostile_campaign_no_longer_collide():
    # a.jpg and a.jpg.png (with a.png, which makes a.jpg keep its extension): both wanted a.jpg.png
    keys = _keys(["a.jpg", "a.jpg.png", "a.png"])
    assert len(set(keys)) == 3 and keys[1] == "a.jpg.png" and keys[2] == "a.png"
    # an input named like the tagged name another input gets
    tagged = "x_1" + tag("x#1.png") + ".png"
    keys = _keys(["x#1.png", tagged])
    assert keys[0] == tagged and keys[1] != tagged and len(set(keys)) == 2
    # a folder x.png/ beside x.jpg: the file's output must not be the folder's name
    keys = output_keys(["x.jpg"], "png", folders=["x.png"])
    assert keys[0] != "x.png"


@pytest.mark.parametrize("names", [["photo#1.png", "photo_1.png"], ["dir\\x.png", "dir/x.png"],
                                   ["we ird?.png", "we ird_.png"], ["../../x/b.png", "x/b.png"]])
def test_names_changed_by_making_them_safe_never_meet_safe_ones(names):
    keys = _keys(names)
    assert len(set(keys)) == 2 and keys[1] == names[1].replace("\\", "/")
    assert keys[0].startswith(names[1].rsplit(".", 1)[0] + "-") and ".." not in keys[0]
    assert keys == _keys(names)  # deterministic


def test_a_key_recorded_as_another_sources_output_is_not_reused():
    taken = {"sub/a.png": "/in/sub/a.jpg"}
    assert _keys(["sub/a.png"], taken=taken)[0] not in ("sub/a.png", None)
    assert _keys(["sub/a.jpg"], taken=taken) == ["sub/a.png"]  # its own output: the same key again


def test_long_and_unusable_names_get_short_safe_keys():
    long = "n" * 240 + ".png"
    key, empty = _keys([long])[0], _keys([".."])[0]
    assert len(posixpath.basename(key).encode()) < 200 and key.endswith(".png")
    assert empty.startswith("unnamed-") and ".." not in empty


NAME = st.text(alphabet="aAb.#_-/\\ 1", min_size=1, max_size=10)
EXT = st.sampled_from(["png", "PNG", "jpg", "jpeg", "webp", "tif", ""])


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(NAME, EXT), min_size=1, max_size=12, unique=True), st.sampled_from(IMAGE_FORMATS))
def test_no_two_inputs_ever_share_an_output_key(entries, fmt):
    rels = sorted({f"{n}.{e}" if e else n for n, e in entries})
    keys = _keys(rels, fmt)
    given_keys = [k.lower() for k in keys if k]
    assert len(given_keys) == len(set(given_keys))  # never the same key twice (ignoring case)
    folders = {"/".join(k.split("/")[:i]) for k in given_keys for i in range(1, k.count("/") + 1)}
    assert not folders & set(given_keys)  # never a key that is another output's folder
    assert all(not k.startswith("/") and ".." not in k.split("/") for k in given_keys)  # inside the root
    assert keys.count(None) == 0  # without hash collisions every input gets a key


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="ab#_", min_size=1, max_size=3), NAME, EXT), min_size=1, max_size=12,
                unique=True))
def test_listing_each_top_level_folder_apart_gives_the_same_guarantee(entries):
    """As the pipeline lists: top-level files in one call (told which folders exist), each top-level folder in
    its own call; the union never holds a key twice (top-level folder names differ ignoring case, as on the
    case-insensitive stores this guards against)."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    seen_lower: dict[str, str] = {}
    for top, name, ext in entries:
        if seen_lower.setdefault(top.lower(), top) != top:
            continue
        rel = f"{name}.{ext}" if ext else name
        by_folder[top].append(f"{top}/{rel}")
        by_folder[""].append(rel.replace("/", "_").replace("\\", "_"))
    from deblur.core.storage import safe_key

    reserved = [safe_key(t) for t in by_folder if t]
    keys = []
    for top, rels in by_folder.items():
        rels = sorted(set(rels))
        keys += _keys(rels) if top else output_keys(rels, "png", None, rels, reserved)
    given_keys = [k.lower() for k in keys if k]
    assert len(given_keys) == len(set(given_keys))
    folders = {"/".join(k.split("/")[:i]) for k in given_keys for i in range(1, k.count("/") + 1)}
    assert not folders & set(given_keys)

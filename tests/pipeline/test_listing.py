from deblur.pipeline import listing


def test_colliding_output_names_are_kept_apart_and_inside_the_root():
    keys = listing.output_keys("/in", ["/in/a.jpg", "/in/a.png", "/in/../../x/b.png"], "png")
    assert keys == ["a.png", "a.png.png", "x/b.png"]

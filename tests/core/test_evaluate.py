import json
import os

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

import deblur
from deblur import cli
from deblur.core import metrics
from deblur.core.config import EvalConfig
from deblur.core.degrade import parse_degradation
from deblur.core.evaluate import evaluate
from deblur.core.image import decode, encode, from_float, to_float
from tests.conftest import textured, write_image

HELD_OUT = os.path.join(os.path.dirname(deblur.__file__), "assets", "samples", "photos", "kodim19.png")


def _report_ok(out, images: int, methods: set[str]) -> dict:
    table = pq.read_table(out / "metrics.parquet").to_pylist()
    assert len(table) == images * len(methods) and {r["method"] for r in table} == methods
    assert all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in table)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == images and set(summary["mean"]) == methods
    png = cv2.imread(str(out / "report.png"))
    assert png is not None and png.shape[0] > 50
    html = (out / "report.html").read_text()
    assert "<style>" in html and html.count("<tr><td>") >= images  # styled; a row per image
    assert all(f">{r['image']}<" in html for r in table)  # named
    assert "data:image/jpeg;base64," in html and "<h2>Settings</h2>" in html  # crops side by side; settings
    return summary


def test_the_shipped_checkpoint_loads_and_improves_a_blurred_photo():
    model = deblur.load(device="cpu")
    assert type(model.model).__name__ == "UNet" and model.channels == 3
    with open(HELD_OUT, "rb") as f:
        sharp = decode(f.read())[100:228, 200:328]  # a photo the shipped model never saw in training
    for spec in ("gaussian:sigma=1.5", "motion:length=9,angle=60", "defocus:radius=2.5"):
        blurred = from_float(parse_degradation(spec + "+noise:sigma=0.005")(to_float(sharp), np.random.default_rng(0)))
        restored = model(blurred)
        assert metrics.psnr(restored, sharp) > metrics.psnr(blurred, sharp) + 0.5, spec


def test_eval_scores_model_blurred_and_wiener_with_a_report(tmp_path):
    data = tmp_path / "sharp"
    with open(HELD_OUT, "rb") as f:
        photo = decode(f.read())
    for i in range(3):
        write_image(data / f"p{i}.png", np.ascontiguousarray(photo[i * 100 : i * 100 + 96, 100:196]))
    out = tmp_path / "eval"
    assert cli.main(["eval", "--data", str(data), "--degradation", "defocus:radius=2.5+noise:sigma=0.005",
                     "--output", str(out), "--crop-border", "4"]) == 0
    summary = _report_ok(out, 3, {"blurred", "wiener", "model"})
    assert summary["mean"]["model"]["psnr"] > summary["mean"]["blurred"]["psnr"]
    again = tmp_path / "again"
    evaluate(EvalConfig(data=str(data), output=str(again), degradation="defocus:radius=2.5+noise:sigma=0.005",
                        crop_border=4))
    assert json.loads((again / "summary.json").read_text())["mean"] == summary["mean"]  # reproducible


def test_paired_folders_and_small_images_in_the_articles_layout(tmp_path, capsys):
    sharp, blurred = tmp_path / "sharp", tmp_path / "blurred"
    deg = parse_degradation("seed")
    for i in range(4):
        tile = textured(28, 28, 1, seed=i)
        write_image(sharp / f"t{i}.png", tile)
        (blurred).mkdir(exist_ok=True)
        (blurred / f"t{i}.jpg").write_bytes(encode(from_float(deg(to_float(tile)[..., None], None)), "jpg", 98))
    out = tmp_path / "eval"
    evaluate(EvalConfig(data=str(sharp), paired=str(blurred), output=str(out), self_ensemble=True))
    summary = _report_ok(out, 4, {"blurred", "model"})  # no kernel known: no Wiener row
    assert summary["degradation"] == "paired"
    assert "evaluating" not in capsys.readouterr().err  # no progress bar when stderr is not a terminal
    grid = cv2.imread(str(out / "report.png"))
    assert grid.shape[0] > 3 * 28 * 4 and grid.shape[1] > 4 * 28 * 4  # rows: sharp, blurred, de-blurred


def test_bad_images_and_missing_pairs_are_recorded_and_the_rest_scored(tmp_path):
    write_image(tmp_path / "sharp" / "a.png", textured(30, 30, 3))
    write_image(tmp_path / "sharp" / "c.png", textured(30, 30, 3, seed=2))
    (tmp_path / "sharp" / "broken.png").write_bytes(b"\x89PNG truncated")
    write_image(tmp_path / "blurred" / "b.png", textured(30, 30, 3))
    write_image(tmp_path / "blurred" / "c.png", textured(30, 30, 3, seed=3))
    line = evaluate(EvalConfig(data=str(tmp_path / "sharp"), paired=str(tmp_path / "blurred"),
                               output=str(tmp_path / "out")))
    assert "1 images" in line and "2 failed" in line
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())["failed"]
    assert {f["image"] for f in failed} == {"a.png", "broken.png"}
    assert any("no degraded image for a.png" in f["error"] for f in failed)
    with pytest.raises(FileNotFoundError, match="no images could be evaluated"):
        evaluate(EvalConfig(data=str(tmp_path / "blurred" / "b.png"), paired=str(tmp_path / "sharp"),
                            output=str(tmp_path / "none")))


def test_without_a_degradation_eval_uses_the_one_the_model_was_trained_on(tmp_path):
    from deblur.core import checkpoint

    data = tmp_path / "sharp"
    with open(HELD_OUT, "rb") as f:
        write_image(data / "p.png", decode(f.read())[:64, :64])
    line = cli.main(["eval", "--data", str(data), "--output", str(tmp_path / "eval")])
    assert line == 0
    trained = checkpoint.read_config(checkpoint.BUNDLED)["blur"]
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["degradation"] == trained

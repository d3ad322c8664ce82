"""Pictures for people: rows of sharp / blurred / de-blurred crops, as the article shows."""

from __future__ import annotations

import cv2
import numpy as np

from deblur.core.image import center_crop, from_float, imencode, to_channels, to_float


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.35, tile.shape[1] / 480)
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(tile, (0, 0), (w + 6, h + 8), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def comparison_grid(rows: list[list[np.ndarray]], labels: list[list[str]], crop: int = 0,
                    gap: int = 4) -> np.ndarray:
    """A uint8 RGB picture: one row per list of images (HW/HWC, any dtype handled by ``to_float``),
    each cropped to its central ``crop`` pixels (0: whole), labelled, separated by ``gap`` white pixels.
    Images in one column must share a size after cropping."""
    out_rows = []
    for images, names in zip(rows, labels):
        tiles = []
        for img, name in zip(images, names):
            f = to_float(img)
            f = to_channels(f, 3)
            tile = from_float(center_crop(f, crop) if crop else f)
            tiles.append(_label(tile, name) if name else tile)
        height = max(t.shape[0] for t in tiles)
        padded = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, gap, cv2.BORDER_CONSTANT, value=(255,) * 3)
                  for t in tiles]
        out_rows.append(np.hstack(padded))
    width = max(r.shape[1] for r in out_rows)
    out_rows = [cv2.copyMakeBorder(r, 0, gap, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=(255,) * 3)
                for r in out_rows]
    return np.vstack(out_rows)


TITLES = {"sharp": "sharp", "blurred": "blurred", "wiener": "Wiener (true kernel)", "model": "de-blurred"}


def write_report(scored: list, summary: dict) -> dict[str, bytes]:
    """``report.png`` and ``report.html`` for evaluation results (``deblur.core.evaluate.Scored`` items).

    Small images (under 64 px, e.g. Fashion-MNIST) are laid out as the article shows them: one row each
    of originals, blurred and predicted (then Wiener), 4x enlarged; photos get one row per image with
    sharp / blurred / Wiener / de-blurred central crops.
    """
    methods = ["sharp", "blurred", *(m for m in ("wiener", "model") if m in scored[0].images)]
    titles = TITLES
    small = max(scored[0].images["sharp"].shape[:2]) < 64
    if small:
        big = [{m: cv2.resize(s.images[m], None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST) for m in methods}
               for s in scored]
        order = ["sharp", "blurred", "model", *(["wiener"] if "wiener" in methods else [])]
        rows = [[b[m] for b in big] for m in order]
        labels = [[titles[m] if i == 0 else "" for i in range(len(big))] for m in order]
        grid = comparison_grid(rows, labels)
    else:
        rows = [[s.images[m] for m in methods] for s in scored]
        labels = [[titles[m] + (f" {s.scores[m]['psnr']:.2f} dB" if m in s.scores else "") for m in methods]
                  for s in scored]
        grid = comparison_grid(rows, labels, crop=256)
    png = imencode("png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return {"report.png": png, "report.html": _html(scored, summary, methods).encode()}


def _html(scored: list, summary: dict, methods: list[str]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(m)} PSNR</th><th>{escape(m)} SSIM</th>" for m in summary["mean"])
    mean = "".join(f"<td>{v['psnr']:.2f}</td><td>{v['ssim']:.4f}</td>" for v in summary["mean"].values())
    body = "".join(
        f"<tr><td>{escape(s.key)}</td>" + "".join(
            f"<td>{s.scores[m]['psnr']:.2f}</td><td>{s.scores[m]['ssim']:.4f}</td>" for m in summary["mean"])
        + "</tr>" for s in scored)
    return (f"<!doctype html><meta charset=utf-8><title>deblur evaluation</title>"
            f"<h1>deblur evaluation</h1><p>degradation: <code>{escape(summary['degradation'])}</code>, model: "
            f"<code>{escape(summary['model'])}</code>, {summary['images']} images; the model is below the "
            f"blurred input on {summary['model_below_blurred']}.</p>"
            f"<table border=1 cellpadding=4><tr><th>image</th>{head}</tr><tr><td><b>mean</b></td>{mean}</tr>"
            f"{body}</table><p>PSNR in dB and SSIM as BasicSR computes them (8-bit).</p>"
            f"<img src=report.png alt='sharp, blurred and de-blurred crops'>")

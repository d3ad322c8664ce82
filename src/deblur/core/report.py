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


def write_report(scored: list, summary: dict, shown: list) -> dict[str, bytes]:
    """``report.png`` and ``report.html`` for evaluation results (``deblur.core.evaluate.Scored`` items):
    ``scored`` all of them (the HTML table), ``shown`` those pictured.

    Small images (under 64 px, e.g. Fashion-MNIST) are laid out as the article shows them: one row each
    of originals, blurred and predicted (then Wiener), 4x enlarged; photos get one row per image with
    sharp / blurred / Wiener / de-blurred central crops.
    """
    methods = ["sharp", "blurred", *(m for m in ("wiener", "model") if m in shown[0].images)]
    small = max(shown[0].images["sharp"].shape[:2]) < 64
    if small:
        big = [{m: cv2.resize(s.images[m], None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST) for m in methods}
               for s in shown]
        order = ["sharp", "blurred", "model", *(["wiener"] if "wiener" in methods else [])]
        rows = [[b[m] for b in big] for m in order]
        labels = [[TITLES[m] if i == 0 else "" for i in range(len(big))] for m in order]
        grid = comparison_grid(rows, labels)
    else:
        rows = [[s.images[m] for m in methods] for s in shown]
        labels = [[TITLES[m] + (f" {s.scores[m]['psnr']:.2f} dB" if m in s.scores else "") for m in methods]
                  for s in shown]
        grid = comparison_grid(rows, labels, crop=256)
    png = imencode("png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return {"report.png": png, "report.html": _html(scored, summary, shown, methods).encode()}


STYLE = ("body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
         "th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}th{background:#f4f4f4}"
         "td:first-child,th:first-child{text-align:left}tr.mean td{font-weight:bold;border-bottom:2px solid #999}"
         "td.worse{color:#b00}figure{display:inline-block;margin:0 8px 12px 0}figure img{display:block}"
         "figcaption{font-size:12px;color:#555}code{background:#f4f4f4;padding:1px 4px}")


def _crop_uri(img: np.ndarray, size: int = 192) -> str:
    """A central ``size`` crop of ``img`` as an inline JPEG ``data:`` URI."""
    import base64

    f = to_channels(to_float(img), 3)
    tile = from_float(center_crop(f, size) if min(f.shape[:2]) > size else f)
    if max(tile.shape[:2]) < 64:
        tile = cv2.resize(tile, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    data = imencode("jpg", cv2.cvtColor(tile, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _html(scored: list, summary: dict, shown: list, methods: list[str]) -> str:
    from html import escape

    cols = list(summary["mean"])
    head = "".join(f"<th>{escape(TITLES.get(m, m))}<br>PSNR dB / SSIM</th>" for m in cols)
    mean = "".join(f"<td>{v['psnr']:.2f} / {v['ssim']:.4f}</td>" for v in summary["mean"].values())

    def row(s) -> str:
        worse = s.scores["model"]["psnr"] < s.scores["blurred"]["psnr"]
        cells = "".join(f"<td{' class=worse' if worse and m == 'model' else ''}>{s.scores[m]['psnr']:.2f} / "
                        f"{s.scores[m]['ssim']:.4f}</td>" for m in cols)
        h, w = s.images["sharp"].shape[:2]
        return f"<tr><td>{escape(s.key)}</td><td>{w}x{h}</td>{cells}</tr>"

    settings = "".join(f"<tr><td>{escape(str(k))}</td><td><code>{escape(str(v))}</code></td></tr>"
                       for k, v in summary.get("settings", {}).items())
    figures = "".join(
        f"<h3>{escape(s.key)}</h3>" + "".join(
            f"<figure><img src='{_crop_uri(s.images[m])}' alt='{escape(TITLES[m])}'><figcaption>{escape(TITLES[m])}"
            + (f" {s.scores[m]['psnr']:.2f} dB" if m in s.scores else "") + "</figcaption></figure>" for m in methods)
        for s in shown)
    failed = "".join(f"<li>{escape(f['image'])}: {escape(f['error'])}</li>" for f in summary.get("failed", []))
    return (f"<!doctype html><meta charset=utf-8><title>deblur evaluation: {escape(summary['model'])}</title>"
            f"<style>{STYLE}</style><h1>deblur evaluation</h1>"
            f"<p>Model <code>{escape(summary['model'])}</code> on {summary['images']} images, degradation "
            f"<code>{escape(summary['degradation'])}</code>. The model is below the blurred input on "
            f"{summary['model_below_blurred']} of them (red). PSNR in dB and SSIM as BasicSR computes them (8-bit).</p>"
            f"<h2>Scores</h2><table><tr><th>image</th><th>size</th>{head}</tr>"
            f"<tr class=mean><td>mean</td><td></td>{mean}</tr>{''.join(row(s) for s in scored)}</table>"
            + (f"<h2>Failed</h2><ul>{failed}</ul>" if failed else "")
            + f"<h2>Before and after</h2><p>Central crops, side by side.</p>{figures}"
            f"<h2>Settings</h2><table>{settings}</table>")

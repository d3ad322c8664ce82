"""scripts/train_single.py: the one-device trainer behind the committed weights (same steps, no Ray)."""

import json
import os
import subprocess
import sys

from deblur.core import checkpoint

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "train_single.py")


def _train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(SCRIPT))}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=300, env=env)


def test_trains_validates_checkpoints_and_fine_tunes(photo_folder, tmp_path):
    common = ["--data", str(photo_folder), "--val", str(photo_folder), "--batch", "4", "--patch", "32",
              "--minutes", "0.1", "--val-every", "2", "--loader-workers", "1", "--flips", "--clip", "1",
              "--model-options", '{"width": 8}', "--degradation", "blind:motion_share=0.5+noise:sigma=0.01", "--channels-last"]
    first = _train(*common, "--output", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "best val PSNR" in first.stdout
    model, config = checkpoint.load(str(tmp_path / "a"))
    assert config["model"] == "unet" and config["settings"]["width"] == 8
    assert config["metrics"]["steps"] > 0 and config["train"]["script"] == "scripts/train_single.py"
    second = _train(*common, "--init", str(tmp_path / "a"), "--lr", "1e-4", "--degrade-on", "device",
                    "--output", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr[-2000:]
    with open(tmp_path / "b" / "config.json") as f:
        record = json.load(f)
    assert record["train"]["init"] == str(tmp_path / "a") and record["train"]["degrade_on"] == "device"
    assert record["metrics"]["steps"] > 0

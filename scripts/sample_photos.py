"""Write scikit-image's bundled sample photos to a folder: the evaluation set for photo models.

These photos are reserved for evaluation: never train or tune on them.

    python scripts/sample_photos.py OUTPUT_DIR
"""

from __future__ import annotations

import os
import sys

import skimage.data

from deblur.core.image import encode

NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "immunohistochemistry", "hubble_deep_field")


def main(output: str) -> None:
    os.makedirs(output, exist_ok=True)
    for name in NAMES:
        with open(os.path.join(output, f"{name}.png"), "wb") as f:
            f.write(encode(getattr(skimage.data, name)(), "png"))
    print(f"{len(NAMES)} scikit-image sample photos -> {output}")


if __name__ == "__main__":
    main(sys.argv[1])

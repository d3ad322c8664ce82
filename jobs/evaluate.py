"""`ray job submit --working-dir . -- python jobs/evaluate.py [options of `deblur eval`]`

Scores a model against the blurred input and Wiener deconvolution on a folder/bucket of sharp images
(or a paired folder of blurred ones) and writes metrics.parquet, summary.json and report.png/.html to
--output (any fsspec URL); exits non-zero on failure.
"""

import sys

from _entry import main

if __name__ == "__main__":
    sys.exit(main("eval"))

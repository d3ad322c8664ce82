"""`ray job submit --working-dir . -- python jobs/train.py [options of `deblur train`]`

Attaches to the cluster that runs the job (`ray.init()` with no address); exits non-zero on failure.
"""

import sys

from _entry import main

if __name__ == "__main__":
    sys.exit(main("train"))

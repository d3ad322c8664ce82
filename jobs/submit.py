r"""Submit a scheduled deblur job once per day (or any run key), retrying a run that failed, with this
checkout's code uploaded: ``python -m deblur.jobs submit`` (see there) plus jobs/runtime_env.yaml.

    python jobs/submit.py --address http://HEAD:8265 --id deblur-nightly-2026-11-25 --wait -- \
        python jobs/deblur.py --input s3://bucket/in --output s3://bucket/out
"""

from __future__ import annotations

import os
import sys

import yaml
from _entry import use_package

HERE = os.path.dirname(os.path.abspath(__file__))


def runtime_env() -> dict:
    """jobs/runtime_env.yaml, uploading this checkout (only its code)."""
    with open(os.path.join(HERE, "runtime_env.yaml")) as f:
        env = yaml.safe_load(f)
    return {**env, "working_dir": os.path.dirname(HERE)}


def main(argv: list[str] | None = None) -> int:
    use_package()
    from deblur.jobs import main as submit

    return submit(["submit", *(sys.argv[1:] if argv is None else argv)], runtime_env=runtime_env())


if __name__ == "__main__":
    sys.exit(main())

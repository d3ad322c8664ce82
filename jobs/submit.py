"""Submit a deblur job once per submission id: a repeated trigger (cron retry, double click) does not
double-submit.

    python jobs/submit.py --address http://HEAD:8265 --id deblur-nightly-2026-11-25 -- \
        python jobs/deblur.py --input s3://bucket/in --output s3://bucket/out

Uses jobs/runtime_env.yaml and passes the client's storage endpoint/region variables (never secrets)
through to the job when they are set. Prints the submission id; exits 0 when the job was submitted now
or earlier, 1 on failure; ``--wait`` follows the job and exits with its outcome.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import yaml
from ray.job_submission import JobStatus, JobSubmissionClient

HERE = os.path.dirname(os.path.abspath(__file__))
PASS_THROUGH = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "FSSPEC_S3_ENDPOINT_URL")


def runtime_env() -> dict:
    with open(os.path.join(HERE, "runtime_env.yaml")) as f:
        env = yaml.safe_load(f)
    env["working_dir"] = os.path.dirname(HERE)
    passed = {k: os.environ[k] for k in PASS_THROUGH if os.environ.get(k)}
    if passed:
        env["env_vars"] = {**env.get("env_vars", {}), **passed}
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"))
    ap.add_argument("--id", required=True, help="stable submission id, e.g. deblur-nightly-$(date +%%F)")
    ap.add_argument("--wait", action="store_true", help="follow the job; exit with its outcome")
    ap.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- command to run on the cluster")
    args = ap.parse_args(argv)
    entrypoint = [a for a in args.entrypoint if a != "--"]
    if not entrypoint:
        ap.error("give the job's command after --")
    client = JobSubmissionClient(args.address)
    existing = {j.submission_id for j in client.list_jobs()}
    if args.id in existing:
        print(f"{args.id}: already submitted ({client.get_job_status(args.id).value}); not submitting again")
    else:
        client.submit_job(entrypoint=shlex.join(entrypoint), submission_id=args.id, runtime_env=runtime_env())
        print(f"{args.id}: submitted")
    if not args.wait:
        return 0
    while (status := client.get_job_status(args.id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        time.sleep(2)
    print(f"{args.id}: {status.value}")
    return 0 if status == JobStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())

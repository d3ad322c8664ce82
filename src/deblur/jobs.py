r"""Submitting deblur jobs, once per run key, retrying a run that failed: ``python -m deblur.jobs submit``.

    python -m deblur.jobs submit --address http://HEAD:8265 --id deblur-nightly-2026-11-25 --wait -- \
        deblur run --input s3://bucket/in --output s3://bucket/out

Each trigger with the same ``--id`` looks at that run's attempts (submission ids ``ID-1``, ``ID-2``, ...):
one that succeeded or is still going means nothing more to do; when all of them failed (or were stopped), it
submits the next attempt, up to ``--attempts``. With ``--wait`` it follows the attempt and exits 0 only when
the day's run succeeded, 1 when it failed, so cron or a CI scheduler sees the failure and the next trigger
retries it. The output's manifest makes a retry redo only what the failed attempt did not finish.

The installed package is all it needs: the job runs the ``deblur`` command of the cluster's image (the
Dockerfile's). ``jobs/submit.py`` in a checkout calls this with the checkout's code uploaded instead
(``jobs/runtime_env.yaml``). The client's storage endpoint/region variables (never secrets) travel to the
job; a head with token authentication needs Ray's token on this machine (:func:`deblur.runtime.use_token_if_present`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from deblur.runtime import TOKEN_FILE, storage_env, use_token_if_present

GOING, OK = ("PENDING", "RUNNING"), "SUCCEEDED"
TRANSIENT = ("try again later", "No available agent")  # Ray's answers while a fresh head's agents start


def retrying(call, tries: int = 6, first_wait: float = 1.0, sleep=time.sleep):
    """``call()``, retried with doubling waits (1, 2, 4, ... s; at most ``tries`` calls, about a minute) while
    Ray answers that it is not ready yet (:data:`TRANSIENT`); any other error, or the last one, is raised."""
    for attempt in range(tries):
        try:
            return call()
        except Exception as e:
            if attempt + 1 == tries or not any(t in str(e) for t in TRANSIENT):
                raise
            print(f"the cluster is not ready ({str(e).strip().splitlines()[-1][:120]}); retrying in "
                  f"{first_wait * 2 ** attempt:.0f}s", file=sys.stderr)
            sleep(first_wait * 2 ** attempt)


def attempts(client, run: str) -> list[tuple[str, str]]:
    """(submission id, status) of ``run``'s attempts, oldest first."""
    found = []
    for job in client.list_jobs():
        sid = job.submission_id or ""
        head, _, n = sid.rpartition("-")
        if head == run and n.isdigit():
            found.append((int(n), sid, str(job.status.value)))
    return [(sid, status) for _, sid, status in sorted(found)]


def main(argv: list[str] | None = None, runtime_env: dict | None = None) -> int:
    """``submit`` (the one command); ``runtime_env``: the job's runtime environment (default: the client's
    storage settings only, the code being the cluster image's)."""
    parser = argparse.ArgumentParser(prog="python -m deblur.jobs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    ap = parser.add_subparsers(dest="command", required=True).add_parser(
        "submit", help="submit a run (once per --id; a failed one again)")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"))
    ap.add_argument("--id", required=True, help="the run's key, e.g. deblur-nightly-$(date +%%F)")
    ap.add_argument("--attempts", type=int, default=3, help="most attempts per run key (default: %(default)s)")
    ap.add_argument("--wait", action="store_true", help="follow the attempt; exit 0 only if the run succeeded")
    ap.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- command to run on the cluster")
    args = parser.parse_args(argv)
    entrypoint = [a for a in args.entrypoint if a != "--"]
    if not entrypoint:
        ap.error("give the job's command after --")
    from ray.job_submission import JobSubmissionClient

    token = use_token_if_present()  # one way to find a cluster's authentication, everywhere
    env, passed = runtime_env or {}, storage_env()
    if passed:
        env = {**env, "env_vars": {**env.get("env_vars", {}), **passed}}

    try:
        client = JobSubmissionClient(args.address)
        done = retrying(lambda: attempts(client, args.id))
    except Exception as e:
        if "auth" not in str(e).lower():
            raise
        hint = "the token on this machine was refused" if token else "no token on this machine"
        print(f"{args.id}: {args.address} requires Ray's authentication token ({hint}): run `ray get-auth-token` "
              f"on the head and save it as {TOKEN_FILE} (or set RAY_AUTH_TOKEN)", file=sys.stderr)
        return 2
    sid, status = done[-1] if done else (None, None)
    if status == OK or status in GOING:
        print(f"{args.id}: attempt {sid} {status}; not submitting again")
    elif len(done) >= args.attempts:
        print(f"{args.id}: all {len(done)} attempts failed; not retrying (raise --attempts to)", file=sys.stderr)
        return 1
    else:
        sid = f"{args.id}-{len(done) + 1}"
        retrying(lambda: client.submit_job(entrypoint=shlex.join(entrypoint), submission_id=sid,
                                           runtime_env=env or None))
        print(f"{args.id}: submitted attempt {sid}" + (f" (after {len(done)} failed)" if done else ""))
    if not args.wait:
        return 0
    while (status := str(client.get_job_status(sid).value)) in GOING:
        time.sleep(2)
    print(f"{args.id}: attempt {sid} {status}")
    if status != OK:
        print(cause(client, sid, args.address), file=sys.stderr)
    return 0 if status == OK else 1


def cause(client, sid: str, address: str, lines: int = 15) -> str:
    """Why attempt ``sid`` did not succeed: the last ``lines`` of its log, and the command that shows all of it."""
    try:
        tail = client.get_job_logs(sid).rstrip().splitlines()[-lines:]
    except Exception as e:  # the cluster went away meanwhile: say so, the status stands
        tail = [f"(its log could not be read: {type(e).__name__}: {str(e).strip()[:200]})"]
    return "\n".join([f"{sid}: the end of its log:", *(f"  {line}" for line in tail),
                      f"all of it: ray job logs --address {address} {sid}"])


if __name__ == "__main__":
    sys.exit(main())

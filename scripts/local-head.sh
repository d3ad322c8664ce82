#!/usr/bin/env bash
# A Ray head on this machine, started from the venv (so submitted jobs run the venv's Python, which has
# deblur), with token authentication on; stopped, and only it, by its port (`ray stop` stops every Ray here).
#
#   scripts/local-head.sh start [PORT [DASHBOARD_PORT]] [-- EXTRA `ray start` OPTIONS]
#   scripts/local-head.sh stop [PORT]
#
# Defaults: PORT 6379, DASHBOARD_PORT 8265. The token is Ray's, in ~/.ray/auth_token (made when missing);
# deblur commands and jobs/submit.py find it there, the `ray` CLI needs RAY_AUTH_MODE=token.
set -euo pipefail
cmd=${1:-}; shift || true
port=6379; dash=8265
if [[ $# -gt 0 && $1 != -- ]]; then port=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then dash=$1; shift; fi
[[ ${1:-} == -- ]] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
state=${TMPDIR:-/tmp}/deblur-ray-head-$port

case $cmd in
start)
    [[ -e $state.pid ]] && kill -0 "$(cat "$state.pid")" 2>/dev/null && { echo "a head on port $port runs already"; exit 1; }
    # no drain on SIGTERM (a Ray Serve feature that waits up to 30 s for leases a stopped head no longer needs)
    export PATH="$venv/bin:$PATH" RAY_AUTH_MODE=token RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0
    [[ -s ~/.ray/auth_token ]] || ray get-auth-token --generate >/dev/null
    setsid ray start --head --block --port "$port" --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 \
        --dashboard-port "$dash" --disable-usage-stats "$@" >"$state.log" 2>&1 &
    echo $! >"$state.pid"
    for _ in $(seq 180); do  # ready once its Jobs API answers (the dashboard answers first)
        if ray job list --address "http://127.0.0.1:$dash" >/dev/null 2>&1; then
            echo "head on 127.0.0.1:$port, Jobs API http://127.0.0.1:$dash (log: $state.log)"
            exit 0
        fi
        kill -0 "$(cat "$state.pid")" 2>/dev/null || { tail -20 "$state.log"; exit 1; }
        sleep 1
    done
    echo "the head did not answer in 180 s (log: $state.log)"; exit 1 ;;
stop)
    [[ -e $state.pid ]] || { echo "no head of ours on port $port"; exit 1; }
    pid=$(cat "$state.pid")
    # SIGTERM to `ray start` alone: it drains the node through its GCS and stops its processes (seconds);
    # the whole group at once would stop the GCS first, and ray start then waits 30 s for it.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true  # what is left of its group
    rm -f "$state.pid"
    # Ray's note of "the cluster on this machine", when it names this head (ray stop removes it; a stale one
    # makes the next plain ray.init() try to attach to a dead head)
    current=${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray/ray_current_cluster
    grep -qs ":$port\$" "$current" && rm -f "$current"
    echo "stopped the head on port $port" ;;
*)
    sed -n '2,10p' "$0"; exit 2 ;;
esac

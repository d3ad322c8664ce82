#!/usr/bin/env bash
# The benchmarks' GPU figures (and, where that machine's CPU has AMX or AVX512-BF16, the CPU bf16 figures),
# in one run on a lent GPU machine that has torch but no Ray. Pack Ray first, here:
#   ../shared/tools/device-ray.sh            # writes .device/site.tar.xz
# then run this script there from the repository root with .device and data/eval-photos carried; figures
# (JSON) land in $OUT (default ./bench-out). Each step is bounded, so a slow one cannot eat the others' time.
set -uo pipefail
out=${OUT:-bench-out}; mkdir -p "$out"
mkdir -p /tmp/site && tar xJf .device/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1 RAY_DEDUP_LOGS=0
py=python3
{ lscpu | grep -E '^(Model name|CPU\(s\))'; echo "bf16 flags: $(grep -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')";
  nvidia-smi -L; $py -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)'; } | tee "$out/machine.txt"
step() { local name=$1 limit=$2; shift 2; echo "== $name"; timeout "$limit" "$@" > "$out/$name.json" 2> "$out/$name.err";
         echo "rc=$?"; cat "$out/$name.json"; tail -c 1500 "$out/$name.err"; }
step precision-gpu 60 $py bench/precision.py --device cuda --json
step throughput-gpu 240 $py bench/throughput.py --gpu --images 192 --tiny 2000 --json
if grep -q -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo; then  # the CPU side on two of its cores, as the 2-core target
  step precision-cpu2 60 taskset -c 0,1 $py bench/precision.py --json
  step throughput-cpu2 150 taskset -c 0,1 $py bench/throughput.py --images 8 --tiny 0 --no-big --json
fi

#!/usr/bin/env bash
# The README's real-pair figures ("Train on real pairs", "Distil a model into a fast one"), end to end:
# split ../shared/data/realpairs by clip into a BasicSR layout (two REDS clips to train on; the third clip and
# the GoPro frames held out), score the shipped model, fine-tune it on the pairs for 10 minutes, then distil the
# fine-tuned model with its x8 self-ensemble (the teacher) into the shipped model (the student) on the blurry
# training frames alone. Usage: scripts/real_pairs.sh [WORK] (default: outputs/real-pairs)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/realpairs}
W=${1:-outputs/real-pairs}
B=.venv/bin/deblur
mkdir -p "$W"/{train,val}/{input,target}
for f in "$DATA"/blur/*.png; do
  n=$(basename "$f"); case $n in redsnv*|gpr*) s=val ;; *) s=train ;; esac
  cp "$DATA/blur/$n" "$W/$s/input/$n"; cp "$DATA/sharp/$n" "$W/$s/target/$n"
done
$B eval --data "$W/val" --output "$W/eval-shipped"
$B train --data "$W/train" --val-data "$W/val" --init src/deblur/assets/default --minutes 10 --batch-size 8 \
  --patch-size 128 --lr 1e-4 --loss charbonnier --flips --val-every 50 --loader-workers 1 --output "$W/ft"
$B eval --model "$W/ft" --data "$W/val" --output "$W/eval-ft"
$B eval --model "$W/ft" --self-ensemble --data "$W/val" --output "$W/eval-ft-ensemble"
# distillation: the teacher's answers for the blurry frames; the student learns them (no sharp image used)
$B run --model "$W/ft" --self-ensemble --input "$W/train/input" --output "$W/taught"
$B run --model "$W/ft" --self-ensemble --input "$W/val/input" --output "$W/taught-val"
$B eval --data "$W/taught-val" --paired "$W/val/input" --output "$W/student-before-vs-teacher"
$B train --data "$W/taught" --paired "$W/train/input" --val-data "$W/taught-val" --init src/deblur/assets/default \
  --minutes 10 --batch-size 8 --patch-size 128 --lr 1e-4 --loss charbonnier --flips --val-every 50 \
  --loader-workers 1 --output "$W/student"
$B eval --model "$W/student" --data "$W/taught-val" --paired "$W/val/input" --output "$W/student-after-vs-teacher"
$B eval --model "$W/student" --data "$W/val" --output "$W/student-vs-truth"

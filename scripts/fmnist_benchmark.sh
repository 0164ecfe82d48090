#!/usr/bin/env bash
# The Fashion-MNIST benchmark of the QAT issue, end to end, figures from one run:
#   fp32 training (configs/fmnist_fp32.ini), PTQ (configs/fmnist_ptq.ini), QAT
#   (configs/fmnist_qat.ini), accuracy of each on the full test set, training
#   images/s on 1 rank x 2 threads vs 2 ranks x 1 thread (same number of steps,
#   same run), int8 vs fp32 inference images/s, and optionally PyTorch 1.13 on
#   the same network, data and schedule (scripts/compare_torch_fmnist.py).
# usage: scripts/fmnist_benchmark.sh [--skip-fp32] [--skip-torch]
#   --skip-fp32: reuse results/fmnist_fp32.h5 instead of training it again.
# Needs build/distq (scripts/build.sh) and the data (scripts/fmnist_data.sh).
# Takes about 40 minutes on 2 cores (fp32 8 epochs ~14 min, QAT 3 epochs
# ~5 min, PyTorch ~20 min). Log lines go to results/fmnist_benchmark.log.
set -euo pipefail
cd "$(dirname "$0")/.."
DISTQ=build/distq
skip_fp32=0 skip_torch=0
for a in "$@"; do
  case "$a" in
    --skip-fp32) skip_fp32=1 ;;
    --skip-torch) skip_torch=1 ;;
    *) echo "usage: $0 [--skip-fp32] [--skip-torch]" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_WAIT_POLICY=passive # shared vCPUs: see include/distq/train.h
LOG=results/fmnist_benchmark.log
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }
for f in results/fmnist_train.h5 results/fmnist_test.h5; do
  [ -f "$f" ] || { echo "$f missing: run scripts/fmnist_data.sh first" >&2; exit 1; }
done
[ -f results/fmnist_cnn.h5 ] || "$DISTQ" model --arch fmnist_cnn --seed 1 -o results/fmnist_cnn.h5
T=$(mktemp -d "${TMPDIR:-/tmp}/distq-fmnist.XXXXXX")
trap 'rm -rf "$T"' EXIT
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. fp32 training, 2 ranks x 1 thread
if [ "$skip_fp32" -eq 0 ]; then
  OMP_NUM_THREADS=1 mpirun --bind-to none -np 2 "$DISTQ" train configs/fmnist_fp32.ini 2>&1 | tee -a "$LOG"
fi

# 2. PTQ of the fp32 model, and the accuracy of both on the test set
OMP_NUM_THREADS=2 "$DISTQ" calibrate --config configs/fmnist_ptq.ini 2>&1 | tee -a "$LOG"
OMP_NUM_THREADS=2 "$DISTQ" eval --model results/fmnist_ptq_int8.h5 --data results/fmnist_test.h5 \
  --batch-size 128 2>&1 | tee -a "$LOG"

# 3. QAT from the fp32 model (its own lines give fake-quant and int8 accuracy)
OMP_NUM_THREADS=1 mpirun --bind-to none -np 2 "$DISTQ" qat configs/fmnist_qat.ini 2>&1 | tee -a "$LOG"
OMP_NUM_THREADS=2 "$DISTQ" eval --model results/fmnist_qat_int8.h5 --data results/fmnist_test.h5 \
  --batch-size 128 2>&1 | tee -a "$LOG"

# 4. training speed, np=1 x 2 threads vs np=2 x 1 thread, 150 steps each, back to back
for mode in train qat; do
  cfg=configs/fmnist_fp32.ini
  [ "$mode" = qat ] && cfg=configs/fmnist_qat.ini
  sed -e "s|^checkpoint = .*|checkpoint = $T/ckpt.h5|" -e "s|^output = .*|output = $T/out.h5|" \
      -e "s|^quantized = .*|quantized = $T/q.h5|" -e "s|^test = .*||" "$cfg" >"$T/speed.ini"
  for np in 1 2; do
    threads=$((2 / np))
    # --bind-to none: mpirun binds a lone rank to one core; distq's own placement shares the cores out
    line=$(OMP_NUM_THREADS=$threads mpirun --bind-to none -np $np "$DISTQ" $mode "$T/speed.ini" --max-steps 150 --epochs 1 \
           2>/dev/null | grep '^trained')
    say "speed $mode np=$np x $threads threads: $line"
  done
done

# 5. inference on the test set's batch size: int8 vs fp32 in one process
OMP_NUM_THREADS=2 "$DISTQ" bench --model results/fmnist_qat_int8.h5 --precision fp32,int8 --batch 128 \
  --min-time 5 --min-iters 20 2>&1 | tee -a "$LOG"

# 6. PyTorch 1.13 on the same network, data and schedules
if [ "$skip_torch" -eq 0 ]; then
  /usr/bin/python3 scripts/compare_torch_fmnist.py --model results/fmnist_cnn.h5 \
    --train results/fmnist_train.h5 --test results/fmnist_test.h5 \
    --fp32-config configs/fmnist_fp32.ini --qat-config configs/fmnist_qat.ini \
    --json results/torch_fmnist.json 2>&1 | tee -a "$LOG"
fi
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

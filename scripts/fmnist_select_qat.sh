#!/usr/bin/env bash
# Chooses the QAT schedule of configs/fmnist_qat.ini on a validation split, so
# that the test set is only used for the figures of scripts/fmnist_benchmark.sh.
#   1. the last 10,000 training images are held out (scripts/fmnist_split.py);
#   2. fp32 fmnist_cnn is trained on the other 50,000 with configs/fmnist_fp32.ini's
#      schedule; PTQ (configs/fmnist_ptq.ini's recipe) gives the baseline;
#   3. each candidate QAT schedule below fine-tunes that model; fake-quant and
#      int8 accuracy are measured on the held-out 10,000.
# The table goes to results/fmnist_qat_selection.log. Freeze points are given
# in epochs here and written as optimizer steps (ceil(50000 / 128) per epoch);
# configs/fmnist_qat.ini states them for the full 60,000 (469 steps per epoch).
# usage: scripts/fmnist_select_qat.sh [--skip-fp32] [--only NAME,...]
#   --skip-fp32: reuse results/selection/fp32.h5;  --only: run just these candidates and
#   append to the log (split, PTQ line, table header, their rows) instead of rewriting it.
# About 25 minutes on 2 cores, plus 8 for fp32.
set -euo pipefail
cd "$(dirname "$0")/.."
DISTQ=build/distq
skip_fp32=0 only= only_arg=
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-fp32) skip_fp32=1 ;;
    --only) only_arg=${2:?--only needs a list}; only=",$only_arg,"; shift ;;
    *) echo "usage: $0 [--skip-fp32] [--only NAME,...]" >&2; exit 2 ;;
  esac
  shift
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
S=results/selection # ignored by git
mkdir -p "$S"
LOG=results/fmnist_qat_selection.log
[ -n "$only" ] || : >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }
[ -f results/fmnist_train.h5 ] || { echo "results/fmnist_train.h5 missing: run scripts/fmnist_data.sh" >&2; exit 1; }
[ -f results/fmnist_cnn.h5 ] || "$DISTQ" model --arch fmnist_cnn --seed 1 -o results/fmnist_cnn.h5

/usr/bin/python3 scripts/fmnist_split.py results/fmnist_train.h5 --val 10000 \
  --train-out "$S/train50k.h5" --val-out "$S/val10k.h5" | tee -a "$LOG"
# retarget a config at the split; extra sed expressions follow
retarget() {
  local src=$1 dst=$2; shift 2
  sed -e "s|^data = results/fmnist_train.h5|data = $S/train50k.h5|" \
      -e "s|^test = .*|test = $S/val10k.h5|" -e "s|^checkpoint = .*|checkpoint = $S/ckpt.h5|" \
      -e "s|^path = results/fmnist_fp32.h5|path = $S/fp32.h5|" "$@" "$src" >"$dst"
}
if [ "$skip_fp32" -eq 0 ]; then
  retarget configs/fmnist_fp32.ini "$S/fp32.ini" -e "s|^output = .*|output = $S/fp32.h5|"
  mpirun --bind-to none -np 2 "$DISTQ" train "$S/fp32.ini" 2>&1 | tee -a "$LOG"
else
  say "fp32: reusing $S/fp32.h5 (trained on $S/train50k.h5)"
fi
retarget configs/fmnist_ptq.ini "$S/ptq.ini" -e "s|^quantized = .*|quantized = $S/ptq.h5|" \
  -e "s|^data = results/fmnist_test.h5|data = $S/val10k.h5|"
OMP_NUM_THREADS=2 "$DISTQ" calibrate --config "$S/ptq.ini" >/dev/null 2>"$S/ptq.log" || { cat "$S/ptq.log" >&2; exit 1; }
OMP_NUM_THREADS=2 "$DISTQ" eval --model "$S/ptq.h5" --data "$S/val10k.h5" --batch-size 128 >"$S/ptq_eval.log" 2>&1 &&
  grep -q accuracy "$S/ptq_eval.log" || { cat "$S/ptq_eval.log" >&2; exit 1; }
say "PTQ on the validation split: $(grep accuracy "$S/ptq_eval.log")"

steps_per_epoch=$(( (50000 + 127) / 128 )) ran=0
say ""
say "| schedule | epochs | lr | lr step (epochs) | freeze BN (epochs) | freeze observers (epochs) | val QAT fake-quant | val QAT int8 |"
say "|---|---|---|---|---|---|---|---|"
# name epochs lr lr_step_epochs freeze_bn_epochs freeze_observers_epochs (lr_gamma 0.1
# throughout; a freeze at 0 epochs means never). "still" (lr 0) only measures what fake
# quantization costs the fp32 model, with observers and BN statistics settling.
while read -r name epochs lr lr_step bn obs; do
  [ -z "$only" ] || [[ "$only" == *",$name,"* ]] || continue
  bn_steps=$(/usr/bin/python3 -c "print(round($bn * $steps_per_epoch))")
  obs_steps=$(/usr/bin/python3 -c "print(round($obs * $steps_per_epoch))")
  retarget configs/fmnist_qat.ini "$S/$name.ini" -e "s|^epochs = .*|epochs = $epochs|" -e "s|^lr = .*|lr = $lr|" \
    -e "s|^lr_step_epochs = .*|lr_step_epochs = $lr_step|" -e "s|^freeze_bn_after = .*|freeze_bn_after = $bn_steps|" \
    -e "s|^freeze_observers_after = .*|freeze_observers_after = $obs_steps|" \
    -e "s|^output = .*|output = $S/${name}_fp32.h5|" -e "s|^quantized = .*|quantized = $S/${name}_int8.h5|"
  # </dev/null: mpirun would read the rest of the candidate list from stdin
  mpirun --bind-to none -np 2 "$DISTQ" qat "$S/$name.ini" </dev/null >"$S/$name.log" 2>&1 ||
    { cat "$S/$name.log" >&2; exit 1; }
  fq=$(sed -n 's/.*QAT fake-quant \([0-9.]*%\).*/\1/p' "$S/$name.log")
  i8=$(sed -n 's/.*QAT int8 \([0-9.]*%\).*/\1/p' "$S/$name.log")
  [ -n "$fq" ] && [ -n "$i8" ] || { echo "$S/$name.log: no QAT accuracy line" >&2; exit 1; }
  ran=$((ran + 1))
  say "| $name | $epochs | $lr | $lr_step | $bn | $obs | $fq | $i8 |"
done <<'EOF'
still 1 0 1 0.5 0.75
current 2 0.002 1 1 1.5
gentle 2 0.0005 1 1 1.5
live_bn 2 0.002 1 0 1.5
long 3 0.002 2 2 2.5
hot 3 0.005 1 2 2.5
live_bn_obs1 2 0.002 1 0 1
live_bn_long 3 0.002 2 0 2.5
gentle_live_bn 2 0.0005 1 0 1.5
EOF
[ "$ran" -gt 0 ] || { echo "no candidate matched --only $only_arg" >&2; exit 2; }

#!/usr/bin/env bash
# The int8 table of imported models: per torchvision model, exported by
# scripts/export_torchvision.py (random weights, fixed seed, opset 13):
#   distq calibrate (x86 recipe, histogram, 32 synthetic images in 4 batches);
#   coverage (int8 conv / linear of all, share of MACs) and the fp32 nodes left;
#   fidelity on 32 other images: int8 vs fp32 relative L2 of the logits and
#   top-1 agreement (distq eval);
#   distq bench --precision fp32,int8 at batch 1 and 32, 2 threads: images/s
#   of each and the int8/fp32 ratio, both measured in the same run.
#
#   scripts/quant_models.sh [-o DIR] [--min-time S] [--size N] [MODEL...]
#
# Needs build/distq and Debian's python3-torch / torchvision / onnx (export).
# Writes DIR/table.md and DIR/log.txt (default results/quant).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=results/quant MIN_TIME=2 SIZE=224
MODELS=()
while (($#)); do
  case $1 in
    -o) OUT=$2; shift 2 ;;
    --min-time) MIN_TIME=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    -*) echo "quant_models.sh: unknown option $1" >&2; exit 2 ;;
    *) MODELS+=("$1"); shift ;;
  esac
done
((${#MODELS[@]})) || MODELS=(resnet18 resnet50 mobilenet_v2 mobilenet_v3_large mnasnet1_0 squeezenet1_1
  densenet121 efficientnet_b0 shufflenet_v2_x1_0 regnet_y_400mf googlenet convnext_tiny)
DISTQ=${DISTQ:-build/distq}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
export OMP_NUM_THREADS=2
"$DISTQ" data --shape "3,$SIZE,$SIZE" -n 32 --seed 11 -o "$OUT/calib.h5" >>"$LOG" 2>&1 &&
  "$DISTQ" data --shape "3,$SIZE,$SIZE" -n 32 --seed 12 -o "$OUT/eval.h5" >>"$LOG" 2>&1 ||
  { echo "quant_models.sh: distq data failed (see $LOG)" >&2; exit 1; }
isa=$("$DISTQ" --version 2>/dev/null | sed -n 's/.*ISA \([a-z0-9_]*\).*/\1/p' | head -n 1)
{
  echo "distq int8 (x86 recipe) vs its own fp32, oneDNN ISA ${isa:-?}, ${SIZE}x${SIZE}, 2 threads, $(date -u +%F);"
  echo "random weights (torchvision, seed 0), synthetic images: fidelity, not accuracy"
  echo
  echo "| model | int8 conv/linear | MACs int8 | fp32 nodes left | rel L2 int8 vs fp32 | top-1 agree | bs1 fp32 img/s | bs1 int8 img/s | bs1 int8/fp32 | bs32 fp32 img/s | bs32 int8 img/s | bs32 int8/fp32 |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/table.md"

perf() { # FILE PRECISION BATCH -> images/s
  awk -F, -v p="$2" -v b="$3" '$1 == "perf" && $3 == p && $5 == b {print $12}' "$1"
}
for m in "${MODELS[@]}"; do
  d="$OUT/$m"
  echo "== $m" | tee -a "$LOG"
  if ! scripts/export_torchvision.py "$m" -o "$d" --image-size "$SIZE" --opset 13 >>"$LOG" 2>&1; then
    echo "| $m | export failed (see log) |" >>"$OUT/table.md"; continue
  fi
  if ! "$DISTQ" calibrate --model "$d/model.onnx" --data "$OUT/calib.h5" --batch-size 8 --batches 4 \
    -o "$d/model_int8.h5" >"$d/calibrate.txt" 2>&1; then
    cat "$d/calibrate.txt" >>"$LOG"
    echo "| $m | calibrate failed: $(grep error "$d/calibrate.txt" | sed 's/.*error: //; s/|/\\|/g' | cut -c1-160) |" >>"$OUT/table.md"
    continue
  fi
  "$DISTQ" inspect "$d/model_int8.h5" >"$d/inspect.txt" 2>&1
  "$DISTQ" eval --model "$d/model_int8.h5" --data "$OUT/eval.h5" --batch-size 8 >"$d/eval.txt" 2>&1
  "$DISTQ" bench --model "$d/model_int8.h5" --precision fp32,int8 --batch 1,32 --min-time "$MIN_TIME" \
    --min-iters 5 --warmup 2 >"$d/bench.txt" 2>&1
  cat "$d/calibrate.txt" "$d/eval.txt" "$d/bench.txt" >>"$LOG"
  grep -E '^  (coverage|fp32) ' "$d/inspect.txt" >>"$LOG"
  cov=$(sed -n 's/^  coverage   \([0-9]* of [0-9]*\) conv2d.*, \([0-9.]*%\) of their MACs.*/\1|\2/p' "$d/inspect.txt")
  left=$(awk '/^  fp32 / {n += $2; s = s (s ? ", " : "") $2 " " $3} END {print (n ? s : "none")}' "$d/inspect.txt" | tr -d ':')
  l2=$(sed -n 's/.*relative L2 error \([0-9.e+-]*\), top-1 agreement \([0-9.]*%\).*/\1|\2/p' "$d/eval.txt")
  f1=$(perf "$d/bench.txt" fp32 1) i1=$(perf "$d/bench.txt" int8 1)
  f32=$(perf "$d/bench.txt" fp32 32) i32=$(perf "$d/bench.txt" int8 32)
  r1=$(awk -v a="$i1" -v b="$f1" 'BEGIN {if (b > 0) printf "%.2fx", a / b}')
  r32=$(awk -v a="$i32" -v b="$f32" 'BEGIN {if (b > 0) printf "%.2fx", a / b}')
  echo "| $m | ${cov%%|*} | ${cov##*|} | $left | ${l2%%|*} | ${l2##*|} | $f1 | $i1 | $r1 | $f32 | $i32 | $r32 |" >>"$OUT/table.md"
done
cat "$OUT/table.md"

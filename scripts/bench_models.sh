#!/usr/bin/env bash
# The imported-model table: per torchvision model, exported by
# scripts/export_torchvision.py (random weights, fixed seed, 224x224, opset 13):
#   import time and peak memory (distq import), nodes;
#   fp32 max |err| / max |logit| of distq (oneDNN) vs PyTorch 1.13 and vs ONNX Runtime;
#   fp32 images/s of distq bench and ONNX Runtime at batch 1 and 32, 2 threads,
#   the two run one after the other in the same script, and their ratio.
#
#   scripts/bench_models.sh [-o DIR] [--min-time S] [--size N] [MODEL...]
#
# Needs build/distq, Debian's python3-torch / torchvision / onnx, and npm's
# onnxruntime-node (`npm install --prefix DIR onnxruntime-node
# --ignore-scripts`; then NODE_PATH=DIR/node_modules). Default: the models the
# importer reads. Writes DIR/table.md and DIR/log.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=results/models MIN_TIME=3 SIZE=224
MODELS=()
while (($#)); do
  case $1 in
    -o) OUT=$2; shift 2 ;;
    --min-time) MIN_TIME=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    -*) echo "bench_models.sh: unknown option $1" >&2; exit 2 ;;
    *) MODELS+=("$1"); shift ;;
  esac
done
((${#MODELS[@]})) || MODELS=(resnet18 resnet50 resnext50_32x4d mobilenet_v2 mobilenet_v3_large
  mnasnet1_0 squeezenet1_1 densenet121 efficientnet_b0 regnet_y_400mf googlenet inception_v3 alexnet vgg16)
DISTQ=${DISTQ:-build/distq}
node -e "require('onnxruntime-node')" 2>/dev/null ||
  { echo "bench_models.sh: onnxruntime-node not found (see the header)" >&2; exit 1; }
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
export OMP_NUM_THREADS=2
isa=$("$DISTQ" onnx-test "/usr/share/libonnx-testdata/data/node/test_relu" 2>/dev/null | head -n 1 | sed 's/.*ISA \([^;]*\);.*/\1/')
{
  echo "distq fp32 (oneDNN, ISA $isa) vs PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') and ONNX Runtime $(node -p "require('onnxruntime-node/package.json').version"), ${SIZE}x${SIZE}, 2 threads, $(date -u +%F)"
  echo
  echo "| model | nodes | import s | peak MB | err vs torch | err vs ORT | bs1 distq img/s | bs1 ORT img/s | bs1 ratio | bs32 distq img/s | bs32 ORT img/s | bs32 ratio | distq setup ms | ORT setup ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/table.md"

for m in "${MODELS[@]}"; do
  d="$OUT/$m"
  echo "== $m" | tee -a "$LOG"
  if ! scripts/export_torchvision.py "$m" -o "$d" --image-size "$SIZE" --batch 2 >>"$LOG" 2>&1; then
    echo "| $m | export failed (see log) |" >>"$OUT/table.md"; continue
  fi
  /usr/bin/time -f 'time %e s %M KB' "$DISTQ" import "$d/model.onnx" -o "$d/model.h5" >"$d/import.txt" 2>&1
  cat "$d/import.txt" >>"$LOG"
  if ! grep -q '^wrote' "$d/import.txt"; then
    echo "| $m | refused: $(grep 'error' "$d/import.txt" | sed 's/.*error: //; s/|/\\|/g' | cut -c1-160) |" >>"$OUT/table.md"
    continue
  fi
  nodes=$(sed -n 's/^wrote .*: \([0-9]*\) nodes.*/\1/p' "$d/import.txt")
  imp_s=$(sed -n 's/^time \([0-9.]*\) s .*/\1/p' "$d/import.txt")
  peak=$(sed -n 's/^time .* s \([0-9]*\) KB/\1/p' "$d/import.txt")
  # ORT's output on the same input, as a second test case (ONNX's layout)
  mkdir -p "$d/ort/test_data_set_0"
  ln -sf ../model.onnx "$d/ort/model.onnx"
  cp "$d/test_data_set_0/input_0.pb" "$d/ort/test_data_set_0/"
  chw=$(/usr/bin/python3 - "$d" <<'PY'
import sys, onnx
from onnx import numpy_helper
d = sys.argv[1]
t = onnx.TensorProto()
t.ParseFromString(open(d + "/test_data_set_0/input_0.pb", "rb").read())
x = numpy_helper.to_array(t).astype("float32")
x.tofile(d + "/ort/in.f32")
print(",".join(str(v) for v in x.shape[1:]))
PY
)
  node scripts/ort_bench.js "$d/model.onnx" --batch 1 --min-time 0 --run "$d/ort/in.f32" "$chw" "$d/ort/out.f32" >>"$LOG" 2>&1
  /usr/bin/python3 - "$d" <<'PY'
import sys, numpy as np, onnx
from onnx import numpy_helper
d = sys.argv[1]
t = onnx.TensorProto()
t.ParseFromString(open(d + "/test_data_set_0/output_0.pb", "rb").read())
ref = numpy_helper.to_array(t)
y = np.fromfile(d + "/ort/out.f32", dtype=np.float32).reshape(ref.shape)
open(d + "/ort/test_data_set_0/output_0.pb", "wb").write(numpy_helper.from_array(y, "logits").SerializeToString())
PY
  err() { "$DISTQ" onnx-test "$1" --backend onednn --logits-tol 1e-4 -v 2>&1 | tee -a "$LOG" |
          sed -n 's/.* \(passed\|FAILED\) *max |err| \([^ ]*\) (max |ref| \([^,]*\),.*/\1 \2 \3/p' |
          awk '{ printf "%.1e%s", $2 / $3, ($1 == "passed" ? "" : " FAILED") }'; }
  e_torch=$(err "$d") e_ort=$(err "$d/ort")
  # speed: distq, then ORT, same batches and threads
  "$DISTQ" bench --model "$d/model.onnx" --precision fp32 --batch 1,32 --threads 2 --min-time "$MIN_TIME" >"$d/bench.txt" 2>&1
  node scripts/ort_bench.js "$d/model.onnx" --batch 1,32 --threads 2 --min-time "$MIN_TIME" >"$d/ort.txt" 2>&1
  cat "$d/bench.txt" "$d/ort.txt" >>"$LOG"
  dq() { grep "^perf,.*,fp32,onednn,$1," "$d/bench.txt" | awk -F, '{print $12}'; }
  ox() { grep "^ort,.*,$1," "$d/ort.txt" | awk -F, '{print $8}'; }
  dsetup=$(grep -m1 'setup' "$d/bench.txt" | sed -n 's/.*setup *\([0-9.]*\) ms.*/\1/p')
  osetup=$(grep -m1 '^ort,' "$d/ort.txt" | awk -F, '{print $4}')
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }
  d1=$(dq 1) o1=$(ox 1) d32=$(dq 32) o32=$(ox 32)
  echo "| $m | $nodes | $imp_s | $((peak / 1024)) | $e_torch | $e_ort | $d1 | $o1 | $(ratio "$d1" "$o1") | $d32 | $o32 | $(ratio "$d32" "$o32") | $dsetup | $osetup |" >>"$OUT/table.md"
  tail -n 1 "$OUT/table.md"
done
echo "wrote $OUT/table.md"

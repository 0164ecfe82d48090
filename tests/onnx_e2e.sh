#!/bin/bash
# ONNX import end to end, against references nobody here wrote:
#   - ONNX's own backend test cases (Debian's libonnx-testdata): every case
#     whose ops the importer claims runs on ref and oneDNN; none may fail;
#   - torchvision models exported by scripts/export_torchvision.py (PyTorch
#     1.13 computes the reference logits), within 1e-4 of max |logit|, on both
#     backends, at opset 13 and 17;
#   - `distq import` and `--model X.onnx` agree bit for bit; PTQ of an imported
#     model; bad files and unsupported ops are refused naming the culprit.
set -uo pipefail
DISTQ=$1
source "$(dirname "$0")/e2e_lib.sh" onnx
SRC="$(cd "$(dirname "$0")/.." && pwd)"
DATA=/usr/share/libonnx-testdata/data
"$DISTQ" onnx-test --help >/dev/null 2>&1 || { echo "no onnx-test command"; exit 1; }

# --- ONNX's suites: "N passed, 0 failed"; N at least what the importer covers
suite() { # NAME MIN_PASSED
  "$DISTQ" onnx-test --suite "$DATA/$1" >"$T/out" 2>&1
  local rc=$? line passed
  line=$(tail -n 1 "$T/out")
  echo "  $1: $line"
  passed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, 0 failed.*/\1/p')
  check "onnx suite $1: 0 failed, >= $2 passed (case x backend)" "[ $rc -eq 0 ] && [ -n '$passed' ] && [ '${passed:-0}' -ge $2 ]"
}
suite node 190
suite pytorch-converted 64
suite pytorch-operator 10
# the ISA the numbers came from, then the lower levels oneDNN can dispatch here
"$DISTQ" onnx-test "$DATA/node/test_relu" | head -n 1
for isa in AVX2 AVX512_CORE; do
  ONEDNN_MAX_CPU_ISA=$isa "$DISTQ" onnx-test --suite "$DATA/node" --backend onednn >"$T/out" 2>&1
  rc=$?
  echo "  $(head -n 1 "$T/out"): $(tail -n 1 "$T/out")"
  check "onnx suite node on oneDNN capped at $isa: 0 failed" "[ $rc -eq 0 ] && tail -n 1 $T/out | grep -q ' 0 failed'"
done

# ONNX_SUITES_ONLY=1: the suites above and the refusals below, not the
# torchvision models (the sanitizer build's run: the importer on ~1,000 files)
if [ "${ONNX_SUITES_ONLY:-0}" = 1 ]; then
  "$DISTQ" import "$DATA/node/test_thresholdedrelu/model.onnx" -o "$T/c.h5" >"$T/out" 2>&1
  check "an unsupported op names the node, op type and opset" \
    "[ $? -ne 0 ] && grep -q \"node '.*' (ThresholdedRelu, opset [0-9]*): op type ThresholdedRelu is not supported\" $T/out"
  finish
  exit
fi

# --- torchvision models: distq's fp32 logits vs PyTorch's
model_case() { # NAME SIZE OPSET
  local dir="$T/$1-$3"
  if ! "$SRC/scripts/export_torchvision.py" "$1" -o "$dir" --image-size "$2" --opset "$3" --classes 100 >"$T/out" 2>&1; then
    fail "export $1 (opset $3)"
    return
  fi
  "$DISTQ" onnx-test "$dir" --logits-tol 1e-4 -v >"$T/out" 2>&1
  local rc=$?
  sed 's/^/  /' "$T/out" | tail -n 2
  check "$1 opset $3 ${2}x$2: ref and onednn logits within 1e-4 of max |logit| of PyTorch's" \
    "[ $rc -eq 0 ] && [ \$(grep -c ' passed ' $T/out) -eq 2 ]"
}
model_case resnet18 64 13
model_case mobilenet_v2 64 13
model_case mobilenet_v3_large 64 13 # hardswish as HardSigmoid + Mul
model_case mobilenet_v3_large 64 17 # HardSwish
model_case squeezenet1_1 64 17
model_case densenet121 64 13 # Pad + AveragePool, Concat
model_case shufflenet_v2_x1_0 64 13 # shape subgraphs folded, channel shuffle (5-D), chunk as Slice
model_case convnext_tiny 32 13 # LayerNorm decomposed (ReduceMean/Sub/Pow/Sqrt/Div), GELU as Erf, MatMul on (N,H,W,C)
model_case convnext_tiny 32 17 # LayerNormalization

# --- PTQ of imported models (int8 where the x86 patterns apply, fp32 elsewhere):
# oneDNN int8 against the plain-C int8 reference within the quantization error
"$DISTQ" data --shape 3,64,64 -n 16 --seed 5 -o "$T/cal64.h5" >/dev/null
"$DISTQ" data --shape 3,64,64 -n 6 --seed 6 -o "$T/ev64.h5" >/dev/null
ptq_case() { # NAME (exported above at opset 13, 64x64)
  local m="$T/$1-13/model.onnx" q="$T/q_$1.h5"
  "$DISTQ" calibrate --model "$m" --data "$T/cal64.h5" --batch-size 8 --batches 2 -o "$q" >"$T/out" 2>&1 &&
    "$DISTQ" infer --model "$q" --data "$T/ev64.h5" -o "$T/y_dnn.h5" --batch 3 >>"$T/out" 2>&1 &&
    "$DISTQ" infer --model "$q" --data "$T/ev64.h5" -o "$T/y_ref.h5" --backend ref >>"$T/out" 2>&1 &&
    "$DISTQ" infer --model "$m" --data "$T/ev64.h5" -o "$T/y_fp32.h5" --backend ref >>"$T/out" 2>&1 &&
    "$SRC/tests/int8_vs_ref.py" "$1 int8" "$T/y_dnn.h5" "$T/y_ref.h5" "$T/y_fp32.h5" >"$T/out" 2>&1
  local rc=$?
  sed 's/^/  /' "$T/out" | tail -n 1
  "$DISTQ" inspect "$q" | grep -E '^  (coverage|fp32) ' | sed 's/^/  /'
  check "PTQ of imported $1: oneDNN int8 within the quantization error of the int8 reference" "[ $rc -eq 0 ]"
}
ptq_case mobilenet_v2 # conv + relu6 (clip) fused
ptq_case mobilenet_v3_large # conv + hardswish fused; SE gates in fp32
ptq_case densenet121 # concat and avg_pool2d in fp32
ptq_case shufflenet_v2_x1_0 # channel shuffle (reshape, transpose), slices in fp32
"$DISTQ" inspect "$T/q_mobilenet_v2.h5" >"$T/out" 2>&1
check "inspect: mobilenet_v2's 52 convs and its linear all int8" "grep -q 'coverage   53 of 53 conv2d / linear int8' $T/out"
check "inspect: the fused clip (relu6) is on the conv" "grep -q ' +clip -> u8' $T/out"
"$DISTQ" bench --model "$T/q_mobilenet_v2.h5" --precision int8 --batch 1 --min-time 0 --min-iters 3 --profile >"$T/out" 2>&1
check "bench --profile: time per step, by kind, against the benchmark's p50" \
  "[ $? -eq 0 ] && grep -q '^  profile bs 1 (5 runs' $T/out && grep -q 'primitives = [0-9]*% of the benchmark' $T/out && [ \$(grep -c 'convolution .*Conv$' $T/out) -ge 5 ]"

# exclusion: a node by name and an op type stay fp32, inspect says why
first=$("$DISTQ" inspect "$T/q_mobilenet_v2.h5" | awk '$2 == "conv2d" {print $3; exit}')
"$DISTQ" calibrate --model "$T/mobilenet_v2-13/model.onnx" --data "$T/cal64.h5" --batch-size 8 --batches 2 \
  --exclude "$first,linear" -o "$T/q_ex.h5" >"$T/out" 2>&1
check "calibrate --exclude NAME,OP" "[ $? -eq 0 ]"
"$DISTQ" inspect "$T/q_ex.h5" >"$T/out" 2>&1
check "inspect: 51 of 53 int8, the excluded conv and linear fp32 as the user asked" \
  "grep -q 'coverage   51 of 53 conv2d / linear int8' $T/out && grep -q 'fp32       1 conv2d: excluded by the user' $T/out && grep -q 'fp32       1 linear: excluded by the user' $T/out"
"$DISTQ" infer --model "$T/q_ex.h5" --data "$T/ev64.h5" -o "$T/y_dnn.h5" --batch 3 >"$T/out" 2>&1 &&
  "$DISTQ" infer --model "$T/q_ex.h5" --data "$T/ev64.h5" -o "$T/y_ref.h5" --backend ref >>"$T/out" 2>&1 &&
  "$DISTQ" infer --model "$T/mobilenet_v2-13/model.onnx" --data "$T/ev64.h5" -o "$T/y_fp32.h5" --backend ref >>"$T/out" 2>&1 &&
  "$SRC/tests/int8_vs_ref.py" "mobilenet_v2, conv and linear excluded" "$T/y_dnn.h5" "$T/y_ref.h5" "$T/y_fp32.h5" >"$T/out" 2>&1
check "the excluded model runs on oneDNN as on the reference (fp32 stem conv first)" "[ $? -eq 0 ]"
"$DISTQ" calibrate --model "$T/mobilenet_v2-13/model.onnx" --data "$T/cal64.h5" --batch-size 8 --batches 2 \
  --exclude "no_such_node*" -o "$T/q_bad.h5" >"$T/out" 2>&1
check "an exclude pattern that matches nothing is an error naming it" \
  "[ $? -ne 0 ] && grep -q \"exclude pattern 'no_such_node\*' matches no node\" $T/out && [ ! -e $T/q_bad.h5 ]"

# --- import: the file and the in-memory import are the same model
R="$T/resnet18-13"
"$DISTQ" import "$R/model.onnx" -o "$T/r18.h5" >"$T/out" 2>&1
check "import writes a model file" "[ $? -eq 0 ] && grep -q 'wrote .*r18.h5: 49 nodes' $T/out"
h5ls "$T/r18.h5/tensors" >"$T/out" 2>&1
check "weights keep their ONNX initializer names" "grep -q 'fc.weight' $T/out"
"$DISTQ" data --shape 3,64,64 -n 8 --seed 1 -o "$T/x.h5" >/dev/null
"$DISTQ" infer --model "$T/r18.h5" --data "$T/x.h5" -o "$T/y_h5.h5" >"$T/out" 2>&1 &&
  "$DISTQ" infer --model "$R/model.onnx" --data "$T/x.h5" -o "$T/y_onnx.h5" >>"$T/out" 2>&1
check "infer --model X.onnx runs" "[ $? -eq 0 ]"
# the data only (the files' attributes name their different models)
logits() { h5dump -d /logits -m %.9g "$1" | awk '/DATA \{/{on=1} on{print} on&&/\}/{exit}'; }
a=$(logits "$T/y_h5.h5") b=$(logits "$T/y_onnx.h5")
check "infer: imported file and --model X.onnx give identical logits" '[ -n "$a" ] && [ "$a" = "$b" ]'
"$DISTQ" calibrate --model "$R/model.onnx" --data "$T/x.h5" --batch-size 4 --batches 2 -o "$T/q.h5" >"$T/out" 2>&1
check "calibrate --model X.onnx writes an int8 model" "[ $? -eq 0 ] && [ -f $T/q.h5 ]"
"$DISTQ" eval --model "$T/q.h5" --data "$T/x.h5" >"$T/out" 2>&1
check "eval of the int8 model from ONNX" "[ $? -eq 0 ] && grep -q 'relative L2' $T/out"

# --- under mpirun: rank 0 parses the ONNX file, the others get the imported
# model from it; np = 2 quantizes exactly as np = 1
"$DISTQ" data --shape 3,64,64 -n 4 --seed 2 -o "$T/held.h5" >/dev/null
run_config() { # NAME MODEL
  cat >"$T/$1.ini" <<INI
[model]
path = $2
[calibration]
data = $T/x.h5
batches = 2
batch_size = 4
[output]
quantized = $T/q_$1.h5
results = $T/res_$1.h5
[bench]
batch = 1
min_time = 0.1
min_iters = 2
precision = int8
[eval]
data = $T/held.h5
batch_size = 4
INI
}
for np in 1 2; do
  run_config "np$np" "$R/model.onnx"
  "$MPIEXEC" -np "$np" "$DISTQ" run "$T/np$np.ini" >"$T/out" 2>&1
  check "mpirun -np $np distq run with an ONNX model" "[ $? -eq 0 ] && [ -f $T/q_np$np.h5 ]"
done
h5diff -r "$T/q_np1.h5" "$T/q_np2.h5" /int8 /int8 >"$T/out" 2>&1 && h5diff -r "$T/q_np1.h5" "$T/q_np2.h5" /tensors /tensors >>"$T/out" 2>&1
check "np = 2 (one parse, model sent to rank 1) quantizes bit for bit as np = 1" "[ $? -eq 0 ]"
# np = 1, 2, 3: the same quantized mobilenet_v2 (int8 and fp32 nodes), bit for bit
for np in 1 2 3; do
  run_config "mv2_np$np" "$T/mobilenet_v2-13/model.onnx"
  "$MPIEXEC" -np "$np" "$DISTQ" run "$T/mv2_np$np.ini" >"$T/out" 2>&1
  check "mpirun -np $np distq run mobilenet_v2" "[ $? -eq 0 ] && [ -f $T/q_mv2_np$np.h5 ]"
done
for np in 2 3; do
  h5diff -r "$T/q_mv2_np1.h5" "$T/q_mv2_np$np.h5" /int8 /int8 >"$T/out" 2>&1
  check "np = $np quantizes mobilenet_v2 bit for bit as np = 1" "[ $? -eq 0 ]"
done
head -c 5000 "$R/model.onnx" >"$T/trunc_run.onnx"
run_config bad "$T/trunc_run.onnx"
"$MPIEXEC" -np 2 "$DISTQ" run "$T/bad.ini" >"$T/out" 2>&1
check "a bad ONNX file under mpirun: every rank stops, one line names it" \
  "[ $? -ne 0 ] && [ \$(grep -c 'error:.*trunc_run.onnx' $T/out) -eq 1 ] && [ ! -e $T/q_bad.h5 ]"

# --- QAT of an imported network: mobilenet_v2 exported in training mode (BN after
# every conv, relu6 as Clip), imported with --training-graph, trained under mpirun.
# lr 0.001, QAT's fine-tuning regime: at 0.01 this random-weight network on random
# labels takes steps so large that the last bits of the gradient reduction's order
# flip fake-quant codes and np = 1 and 2 part after the second step (seen here).
Q="$T/mv2_train"
if "$SRC/scripts/export_torchvision.py" mobilenet_v2 -o "$Q" --image-size 32 --classes 10 --training-graph >"$T/out" 2>&1; then
  "$DISTQ" import "$Q/model.onnx" -o "$Q/plain.h5" >"$T/out" 2>&1
  check "a training-mode export is refused by a plain import, naming --training-graph" \
    "[ $? -ne 0 ] && grep -q 'BatchNormalization.*training statistics.*distq import --training-graph' $T/out"
  "$DISTQ" import "$Q/model.onnx" -o "$Q/m.h5" --training-graph >"$T/out" 2>&1
  check "import --training-graph keeps the 52 BNs: 152 nodes" "[ $? -eq 0 ] && grep -q 'wrote .*m.h5: 152 nodes' $T/out"
  "$DISTQ" data --shape 3,32,32 -n 64 --classes 10 --seed 7 -o "$Q/train.h5" >/dev/null
  "$DISTQ" data --shape 3,32,32 -n 32 --classes 10 --seed 8 -o "$Q/test.h5" >/dev/null
  for np in 1 2; do
    cat >"$Q/np$np.ini" <<INI
[model]
path = $Q/m.h5
[train]
data = $Q/train.h5
test = $Q/test.h5
epochs = 1
batch_size = 16
lr = 0.001
momentum = 0.9
weight_decay = 4e-5
seed = 1
max_steps = 3
checkpoint = $Q/ckpt_np$np.h5
output = $Q/out_np$np.h5
[qat]
freeze_bn_after = 2
freeze_observers_after = 3
[output]
quantized = $Q/q_np$np.h5
INI
    "$MPIEXEC" -np "$np" "$DISTQ" qat "$Q/np$np.ini" >"$T/out" 2>&1
    check "mpirun -np $np distq qat of the imported mobilenet_v2: trained, converted, int8 tested" \
      "[ $? -eq 0 ] && [ -f $Q/q_np$np.h5 ] && grep -q 'QAT int8' $T/out"
  done
  h5diff -d 1e-4 "$Q/out_np1.h5" "$Q/out_np2.h5" /tensors /tensors >"$T/out" 2>&1
  check "np = 2 trains mobilenet_v2 as np = 1 (weights abs 1e-4)" "[ $? -eq 0 ]"
  h5diff -p 1e-4 "$Q/ckpt_np1.h5" "$Q/ckpt_np2.h5" /qat/state /qat/state >"$T/out" 2>&1
  check "np = 2 observer state == np = 1 (relative 1e-4)" "[ $? -eq 0 ]"
  h5diff -q "$Q/m.h5" "$Q/out_np1.h5" /tensors /tensors >/dev/null 2>&1
  check "QAT changed the weights (the comparison can fail)" "[ $? -ne 0 ]"
  "$DISTQ" inspect "$Q/q_np2.h5" >"$T/out" 2>&1
  check "the QAT int8 mobilenet_v2: 52 convs (BN folded) and the linear int8" \
    "grep -q 'coverage   53 of 53 conv2d / linear int8' $T/out"
  "$DISTQ" eval --model "$Q/q_np2.h5" --data "$Q/test.h5" >"$T/out" 2>&1
  check "eval of the QAT int8 model" "[ $? -eq 0 ] && grep -q 'relative L2' $T/out"
else
  fail "export mobilenet_v2 in training mode"
fi

# --- refusals name what is at fault; nothing replaced
"$DISTQ" import "$R/model.onnx" -o "$R/model.onnx" >"$T/out" 2>&1
check "import refuses to overwrite its input" "[ $? -ne 0 ] && [ -s $R/model.onnx ]"
head -c 5000 "$R/model.onnx" >"$T/trunc.onnx"
"$DISTQ" import "$T/trunc.onnx" -o "$T/t.h5" >"$T/out" 2>&1
check "a truncated file is an error naming it" "[ $? -ne 0 ] && grep -q 'trunc.onnx' $T/out && [ ! -e $T/t.h5 ]"
"$DISTQ" import "$DATA/node/test_thresholdedrelu/model.onnx" -o "$T/c.h5" >"$T/out" 2>&1
check "an unsupported op names the node, op type and opset" \
  "[ $? -ne 0 ] && grep -q \"node '.*' (ThresholdedRelu, opset [0-9]*): op type ThresholdedRelu is not supported\" $T/out"
"$DISTQ" onnx-test "$DATA/node/test_thresholdedrelu" >"$T/out" 2>&1
check "onnx-test of one unsupported case exits non-zero" "[ $? -ne 0 ] && grep -q 'unsupported' $T/out"
finish

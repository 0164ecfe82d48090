#!/usr/bin/env bash
# End-to-end tests of the real distq CLI, under the real mpirun.
# usage: cli_e2e.sh PATH/TO/distq      (MPIEXEC may name mpirun)
set -u
DISTQ=$1
source "$(dirname "$0")/e2e_lib.sh" e2e

# expect NAME WANT_RC WANT_TEXT -- command...: exit code and output text both checked.
expect() {
  local name=$1 want_rc=$2 want_text=$3; shift 4
  "$@" >"$T/out" 2>&1
  local rc=$?
  if [ "$rc" -ne "$want_rc" ]; then fail "$name (exit $rc, wanted $want_rc)"; return; fi
  if [ -n "$want_text" ] && ! grep -qF -- "$want_text" "$T/out"; then
    fail "$name (output lacks: $want_text)"; return
  fi
  ok "$name"
}

expect "model linear" 0 "wrote $T/lin.h5" -- "$DISTQ" model --arch linear --seed 3 -o "$T/lin.h5"
expect "model resnet18" 0 "resnet18" -- "$DISTQ" model --arch resnet18 --seed 1 -o "$T/r18.h5"
expect "inspect model lists ops" 0 "linear" -- "$DISTQ" inspect "$T/lin.h5"
expect "inspect resnet18 names torchvision keys" 0 "layer2.0.downsample.0.weight" -- "$DISTQ" inspect "$T/r18.h5"
expect "data with labels" 0 "5 images" -- "$DISTQ" data --shape 1024 -n 5 --seed 4 --classes 10 -o "$T/d.h5"
expect "inspect data" 0 "labels" -- "$DISTQ" inspect "$T/d.h5"
expect "infer onednn" 0 "(5, 1000)" -- "$DISTQ" infer --model "$T/lin.h5" --data "$T/d.h5" -o "$T/y1.h5" --batch 2
expect "infer ref" 0 "ref" -- "$DISTQ" infer --model "$T/lin.h5" --data "$T/d.h5" -o "$T/y2.h5" --backend ref
# oneDNN and the reference agree (absolute 1e-4 on logits of size ~0.5), through the files.
expect "onednn logits match ref" 0 "" -- h5diff -d 1e-4 "$T/y1.h5" "$T/y2.h5" /logits /logits
expect "infer under mpirun -np 2" 0 "wrote" -- "$MPIEXEC" -np 2 "$DISTQ" infer --model "$T/lin.h5" --data "$T/d.h5" -o "$T/y3.h5"
expect "mpirun logits match" 0 "" -- h5diff -d 1e-4 "$T/y1.h5" "$T/y3.h5" /logits /logits
expect "bench under mpirun -np 2" 0 "perf,$T/lin.h5,fp32,onednn,4,1,2," -- \
  "$MPIEXEC" -np 2 "$DISTQ" bench --model "$T/lin.h5" --batch 1,4 --iters 3 --min-time 0 --warmup 1 --threads 1
grep -q "all 2 rank(s): p50" "$T/out" && ok "bench reports the aggregate" || fail "bench reports the aggregate"
# --max-isa caps oneDNN before its first kernel: the header and every perf line say avx2
expect "bench --max-isa avx2" 0 "oneDNN ISA avx2 (capped at avx2)" -- \
  "$DISTQ" bench --model "$T/lin.h5" --batch 2 --iters 2 --min-time 0 --warmup 0 --max-isa avx2
check "bench --max-isa: perf line names avx2" "grep -q '^perf,.*,avx2,\"distq bench' $T/out"
expect "bench --max-isa unknown level" 2 "option --max-isa: 'avx9' is not an ISA level" -- \
  "$DISTQ" bench --model "$T/lin.h5" --max-isa avx9

# An output never replaces an input, nor another output (same file by device and inode).
sum_before=$(cat "$T/lin.h5" "$T/d.h5" | md5sum)
expect "infer -o ./model refused" 1 "is the same file as --model" -- \
  "$DISTQ" infer --model "$T/lin.h5" --data "$T/d.h5" -o "$T/./lin.h5"
ln -s d.h5 "$T/d_link.h5"
expect "infer -o symlink-to-data refused" 1 "is the same file as --data" -- \
  "$DISTQ" infer --model "$T/lin.h5" --data "$T/d.h5" -o "$T/d_link.h5"
expect "calibrate -o data refused" 1 "is the same file as the calibration data" -- \
  "$DISTQ" calibrate --model "$T/lin.h5" --data "$T/d.h5" --batches 1 --batch-size 5 -o "$T/d.h5"
printf '[model]\npath = %s\n[calibration]\ndata = %s\n[output]\nquantized = %s\nresults = %s\n' \
  "$T/lin.h5" "$T/d.h5" "$T/q.h5" "$T/./q.h5" >"$T/same.ini"
expect "run: results = quantized refused" 1 "[output] results = $T/./q.h5 is the same file as [output] quantized" -- \
  "$DISTQ" run "$T/same.ini"
sed -i "s|^quantized = .*|quantized = $T/lin.h5|" "$T/same.ini"
expect "run: quantized = model refused" 1 "[output] quantized = $T/lin.h5 is the same file as [model] path" -- \
  "$DISTQ" run "$T/same.ini"
check "refused runs left the inputs byte for byte" "[ \"\$(cat $T/lin.h5 $T/d.h5 | md5sum)\" = \"$sum_before\" ] && [ ! -e $T/q.h5 ]"

# Errors: one line naming the culprit, non-zero exit.
expect "missing model file" 1 "$T/none.h5" -- "$DISTQ" infer --model "$T/none.h5" --data "$T/d.h5" -o "$T/y.h5"
echo "not hdf5" > "$T/text.h5"
expect "non-HDF5 model file" 1 "$T/text.h5" -- "$DISTQ" bench --model "$T/text.h5"
expect "data shape mismatch" 1 "holds images of shape (1024); model $T/r18.h5 takes (3, 224, 224)" -- "$DISTQ" infer --model "$T/r18.h5" --data "$T/d.h5" -o "$T/y.h5"
[ ! -e "$T/y.h5" ] && ok "no output left after a failed infer" || fail "no output left after a failed infer"
# Data of the right element count but another shape, labels out of range, numbers out of range.
"$DISTQ" data --shape 150528 -n 2 -o "$T/flat.h5" >/dev/null
expect "flat images for a 3x224x224 model refused" 1 "holds images of shape (150528); model $T/r18.h5 takes (3, 224, 224)" -- \
  "$DISTQ" calibrate --model "$T/r18.h5" --data "$T/flat.h5" --batches 1 --batch-size 2 -o "$T/qf.h5"
"$DISTQ" calibrate --model "$T/lin.h5" --data "$T/d.h5" --batches 1 --batch-size 5 -o "$T/lin_q.h5" >/dev/null
"$DISTQ" data --shape 1024 -n 3 --classes 5000 --seed 9 -o "$T/badlab.h5" >/dev/null
expect "eval: label outside the model's classes refused" 1 "is outside [0, 1000), the model's classes" -- \
  "$DISTQ" eval --model "$T/lin_q.h5" --data "$T/badlab.h5"
expect "data: a shape whose size overflows refused" 2 "too many float32 values" -- \
  "$DISTQ" data --shape 1073741824,1073741824,16 -n 1 -o "$T/big.h5"
[ ! -e "$T/big.h5" ] && ok "no overflowed data file written" || fail "no overflowed data file written"
expect "bench --min-time inf refused" 2 "option --min-time: 'inf' is not a finite number" -- \
  "$DISTQ" bench --model "$T/lin.h5" --min-time inf
# Config text libinih would misread, and stray arguments.
{ echo "[model]"; echo "path = $T/lin.h5"; printf '; %0250d observer = minmax\n' 0; } >"$T/long.ini"
expect "config: over-long line refused with its number" 1 "long.ini: line 3 has 270 characters" -- \
  "$DISTQ" calibrate --config "$T/long.ini" --data "$T/d.h5" -o "$T/qx.h5"
printf '[model]\npath = %s\n[bogus]\n' "$T/lin.h5" >"$T/sec.ini"
expect "config: unknown section without keys refused" 1 "line 3: unknown section [bogus]" -- \
  "$DISTQ" calibrate --config "$T/sec.ini" --data "$T/d.h5" -o "$T/qx.h5"
printf '[model]\npath = %s\n\0[calibration]\n' "$T/lin.h5" >"$T/nul.ini"
expect "config: NUL byte refused" 1 "line 3 holds a NUL byte" -- \
  "$DISTQ" calibrate --config "$T/nul.ini" --data "$T/d.h5" -o "$T/qx.h5"
mkdir -p "$T/dir.ini"
expect "config: a directory refused" 1 "dir.ini: is a directory, not a config file" -- "$DISTQ" run "$T/dir.ini"
expect "infer: stray argument refused" 2 "unexpected argument '$T/extra.h5'" -- \
  "$DISTQ" infer --model "$T/lin.h5" --data "$T/d.h5" -o "$T/y9.h5" "$T/extra.h5"
[ ! -e "$T/qx.h5" ] && [ ! -e "$T/y9.h5" ] && ok "refused configs wrote nothing" || fail "refused configs wrote nothing"

expect "unknown arch" 1 "unknown --arch 'vgg'" -- "$DISTQ" model --arch vgg -o "$T/v.h5"
expect "bad integer option" 2 "option --seed" -- "$DISTQ" model --arch linear --seed x -o "$T/v.h5"
expect "bad batch list" 2 "option --batch" -- "$DISTQ" bench --model "$T/lin.h5" --batch 1,,0
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$DISTQ" frobnicate
expect "missing required option" 2 "required" -- "$DISTQ" infer --model "$T/lin.h5"
expect "error under mpirun names the rank" 1 "rank" -- "$MPIEXEC" -np 2 "$DISTQ" bench --model "$T/none.h5"

finish

#!/usr/bin/env bash
# One oneDNN ISA level end to end, through the real CLI: calibrate with auto
# reduce_range, eval, infer (oneDNN int8, reference int8, fp32) and bench.
# ctest runs it uncapped and once per level with ONEDNN_MAX_CPU_ISA set; a
# level above this CPU's exits 77 (skipped).
# usage: isa_e2e.sh PATH/TO/distq
set -u
DISTQ=$1
source "$(dirname "$0")/e2e_lib.sh" isa

"$DISTQ" --version >"$T/out" 2>&1
sed 's/^/isa_e2e: /' "$T/out"
if grep -q "which this CPU lacks" "$T/out"; then
  echo "SKIPPED: this CPU lacks ${ONEDNN_MAX_CPU_ISA}"
  exit 77
fi

# The grid auto must pick, worked out without distq: 8 bits where the
# dispatched ISA has VNNI (the cap allows it and the CPU has it), else 7.
cap=$(printf '%s' "${ONEDNN_MAX_CPU_ISA:-}" | tr '[:upper:]' '[:lower:]')
flags=" $(grep -m1 '^flags' /proc/cpuinfo) "
cpu_vnni=0
for f in avx512_vnni avx_vnni amx_int8; do [[ $flags == *" $f "* ]] && cpu_vnni=1; done
case "$cap" in
  sse41 | avx | avx2 | avx512_core) vnni=0 ;;
  avx2_vnni | avx512_core_vnni | avx512_core_bf16 | avx512_core_amx) vnni=1 ;; # not skipped: the CPU has it
  "" | all) vnni=$cpu_vnni ;;
  *) echo "isa_e2e: unknown ONEDNN_MAX_CPU_ISA '$cap'"; exit 1 ;;
esac
qmax=$((vnni ? 255 : 127))
echo "isa_e2e: cap '${cap:-none}', CPU VNNI $cpu_vnni: expecting activations u8 [0, $qmax]"

"$DISTQ" model --arch resnet18 --image-size 32 --seed 2 -o "$T/m.h5" >"$T/out" 2>&1
check "model" "[ $? -eq 0 ]"
"$DISTQ" data --shape 3,32,32 -n 16 --seed 3 -o "$T/cal.h5" >"$T/out" 2>&1
"$DISTQ" data --shape 3,32,32 -n 6 --seed 4 --classes 10 -o "$T/ev.h5" >>"$T/out" 2>&1
check "data" "[ $? -eq 0 ]"

"$DISTQ" calibrate --model "$T/m.h5" --data "$T/cal.h5" --batch-size 8 --batches 2 -o "$T/q.h5" >"$T/out" 2>&1
check "calibrate: auto reduce_range picks u8 [0, $qmax] at this ISA" \
  "[ $? -eq 0 ] && grep -qF 'activations u8 [0, $qmax]' $T/out"

"$DISTQ" eval --model "$T/q.h5" --data "$T/ev.h5" >"$T/out" 2>&1
check "eval" "[ $? -eq 0 ] && grep -q 'relative L2 error' $T/out"

# oneDNN int8 vs the plain-C int8 reference, against int8 vs fp32 on the same
# images: the chained bound of tests/test_int8_cmp.h (TEST_IMPL_VS_QUANT = 1).
"$DISTQ" infer --model "$T/q.h5" --data "$T/ev.h5" -o "$T/y_dnn.h5" --batch 3 >"$T/out" 2>&1 &&
  "$DISTQ" infer --model "$T/q.h5" --data "$T/ev.h5" -o "$T/y_ref.h5" --backend ref >>"$T/out" 2>&1 &&
  "$DISTQ" infer --model "$T/m.h5" --data "$T/ev.h5" -o "$T/y_fp32.h5" --backend ref >>"$T/out" 2>&1
check "infer int8 (onednn, ref) and fp32" "[ $? -eq 0 ]"
"$(dirname "$0")/int8_vs_ref.py" isa_e2e "$T/y_dnn.h5" "$T/y_ref.h5" "$T/y_fp32.h5" >"$T/out" 2>&1
rc=$?
cat "$T/out"
check "oneDNN int8 vs reference within the quantization error" "[ $rc -eq 0 ]"

"$DISTQ" bench --model "$T/q.h5" --batch 2 --iters 3 --min-time 0 --warmup 1 >"$T/out" 2>&1
check "bench int8 names the ISA" "[ $? -eq 0 ] && grep -q 'oneDNN ISA' $T/out"
[ -n "$cap" ] && check "bench names the cap" "grep -q 'capped at $cap' $T/out"
if [ -z "$cap" ] && [ "$vnni" -eq 1 ]; then
  # the 8-bit model of this CPU, benchmarked with --max-isa below VNNI: refused, naming the fix
  "$DISTQ" bench --model "$T/q.h5" --batch 1 --iters 2 --min-time 0 --max-isa avx512_core >"$T/out" 2>&1
  check "bench --max-isa avx512_core refuses the 8-bit model" "[ $? -eq 1 ] && grep -q -- '--reduce-range on' $T/out"
fi
if [ "$vnni" -eq 0 ]; then
  check "bench int8 says it runs on the 7-bit grid" "grep -q '7-bit grid' $T/out"
  "$DISTQ" calibrate --model "$T/m.h5" --data "$T/cal.h5" --batch-size 8 --batches 2 --reduce-range off -o "$T/q8.h5" >"$T/out" 2>&1
  "$DISTQ" bench --model "$T/q8.h5" --batch 1 --iters 2 --min-time 0 >"$T/out" 2>&1
  check "8-bit model refused without VNNI, naming the fix" "[ $? -eq 1 ] && grep -q -- '--reduce-range on' $T/out"
fi

finish

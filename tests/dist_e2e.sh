#!/usr/bin/env bash
# Distributed end-to-end tests: `distq run` under the real mpirun.
#   - np = 1, 2, 3, 4 (oversubscribed) give bit-identical quantized models
#     (uneven shards: global batches of 6 over 4 ranks are 1,2,1,2 images);
#   - a NaN in one rank's shard fails the whole run, naming that rank, with no
#     model or results file left behind;
#   - the results file holds one entry per rank with the expected datasets;
#   - the placement report matches the binding given to mpirun.
# usage: dist_e2e.sh PATH/TO/distq
set -u
DISTQ=$1
source "$(dirname "$0")/e2e_lib.sh" dist
PY=/usr/bin/python3

"$DISTQ" model --arch resnet18 --seed 5 --image-size 64 -o "$T/m.h5" >/dev/null || { echo "setup failed"; exit 1; }
"$DISTQ" data --shape 3,64,64 -n 12 --seed 6 -o "$T/cal.h5" >/dev/null
"$DISTQ" data --shape 3,64,64 -n 5 --seed 7 --classes 10 -o "$T/held.h5" >/dev/null

# write_config NAME DATA: a run config writing $T/q_NAME.h5 and $T/r_NAME.h5
write_config() {
  cat > "$T/$1.ini" <<INI
[model]
path = $T/m.h5
[calibration]
data = $2
batches = 2
batch_size = 6
observer = histogram
[output]
quantized = $T/q_$1.h5
results = $T/r_$1.h5
[bench]
batch = 1
min_time = 0
min_iters = 3
warmup = 0
precision = fp32,int8
[eval]
data = $T/held.h5
batch_size = 4
[run]
bind = core
INI
}

for np in 1 2 3 4; do
  write_config "np$np" "$T/cal.h5"
  "$MPIEXEC" -np "$np" "$DISTQ" run "$T/np$np.ini" >"$T/out" 2>&1
  check "run np=$np" "[ $? -eq 0 ] && [ -f $T/q_np$np.h5 ] && [ -f $T/r_np$np.h5 ]"
done
for np in 2 3 4; do
  # every object and attribute: weights, scales, zero points, observer histograms
  h5diff "$T/q_np1.h5" "$T/q_np$np.h5" >"$T/out" 2>&1
  check "quantized model np=$np bit-identical to np=1" "[ $? -eq 0 ]"
done
# a test that can fail: a different calibration set changes the model
"$DISTQ" data --shape 3,64,64 -n 12 --seed 99 -o "$T/cal2.h5" >/dev/null
write_config other "$T/cal2.h5"
"$MPIEXEC" -np 2 "$DISTQ" run "$T/other.ini" >"$T/out" 2>&1
h5diff -q "$T/q_np1.h5" "$T/q_other.h5" /quant /quant >/dev/null 2>&1
check "other calibration data gives another model (the comparison can fail)" "[ $? -ne 0 ]"

# results file: one group per rank, points with units
h5ls "$T/r_np3.h5/ranks" >"$T/out" 2>&1
check "results hold 3 ranks" "[ \$(grep -c Group $T/out) -eq 3 ]"
h5dump -A "$T/r_np3.h5" >"$T/out" 2>&1
check "results carry units and provenance" "grep -q units $T/out && grep -q onednn_version $T/out && grep -q config_text $T/out"
"$DISTQ" inspect "$T/r_np3.h5" >"$T/out" 2>&1
check "inspect prints the per-rank table" "[ $? -eq 0 ] && grep -q 'images/s' $T/out"

# a NaN in rank 1's shard (np 2, batch 0: rank 1 reads rows 3..5)
cp "$T/cal.h5" "$T/bad.h5"
$PY - "$T/bad.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    f["images"][4, 0, 10, 10] = np.nan
PY
write_config bad "$T/bad.h5"
"$MPIEXEC" -np 2 "$DISTQ" run "$T/bad.ini" >"$T/out" 2>&1
rc=$?
check "bad shard fails the run" "[ $rc -ne 0 ]"
check "the failing rank and the cause are named" "grep -q 'rank 1: .*NaN' $T/out"
check "no model or results file left behind" "[ ! -e $T/q_bad.h5 ] && [ ! -e $T/r_bad.h5 ] && ! ls $T/*.tmp.* >/dev/null 2>&1"

# placement: a launcher binding is kept; otherwise distq binds
"$MPIEXEC" -np 2 --bind-to core "$DISTQ" run "$T/np2.ini" >"$T/out" 2>&1
check "mpirun --bind-to core: binding kept" "[ \$(grep -c 'bound by launcher' $T/out) -eq 2 ]"
"$MPIEXEC" -np 2 --bind-to none "$DISTQ" run "$T/np2.ini" --bind core >"$T/out" 2>&1
cpus0=$(grep -m1 '^  rank 0  host' "$T/out" | sed 's/.*cpus \([^ ]*\).*/\1/')
cpus1=$(grep -m1 '^  rank 1  host' "$T/out" | sed 's/.*cpus \([^ ]*\).*/\1/')
check "--bind core: distq binds each rank to its own cores ($cpus0 | $cpus1)" \
  "[ \$(grep -c 'bound by distq' $T/out) -eq 2 ] && [ -n '$cpus0' ] && [ '$cpus0' != '$cpus1' ]"
"$MPIEXEC" -np 2 --bind-to none "$DISTQ" run "$T/np2.ini" --bind none >"$T/out" 2>&1
check "--bind none: not bound" "[ \$(grep -c 'bound by none' $T/out) -eq 2 ]"

finish

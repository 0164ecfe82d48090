#!/usr/bin/env bash
# Faults the real CLI must survive, under the real mpirun: a full filesystem
# while writing a model, a quantized model and a results file.
# usage: fault_e2e.sh PATH/TO/distq
#
# The full filesystem is a 2 MiB tmpfs where this machine lets us mount one
# (root with CAP_SYS_ADMIN, as CI has); elsewhere a 2 MiB file-size limit
# (ulimit -f, SIGXFSZ ignored), where write(2) fails with EFBIG instead
# (DISTQ_FAULT_NO_MOUNT=1 picks it anyway).
set -u
DISTQ=$(realpath "$1") # absolute: ranks start in their own directories (-wdir)
source "$(dirname "$0")/e2e_lib.sh" fault

FULL="$T/full"
mkdir -p "$FULL"
if [ -z "${DISTQ_FAULT_NO_MOUNT:-}" ] && mount -t tmpfs -o size=2m tmpfs "$FULL" 2>/dev/null; then
  trap 'umount "$FULL" 2>/dev/null; rm -rf "$T"' EXIT
  limited() { "$@"; }
  limited_ranks() { "$MPIEXEC" "$@"; }
  nospace="No space left on device"
  echo "fault_e2e: full filesystem = a 2 MiB tmpfs"
else
  # the limit on the ranks only: mpirun (and a singleton's own runtime) must
  # stay free to write its session files
  limited() { limited_ranks -np 1 "$@"; }
  limited_ranks() {
    local np=$2; shift 2
    "$MPIEXEC" -np "$np" bash -c 'trap "" XFSZ; ulimit -f 2048; exec "$@"' rank "$@"
  }
  nospace="File too large"
  echo "fault_e2e: full filesystem = ulimit -f 2048 (mount refused)"
fi

# run_config FILE MODEL DATA BATCHES BATCH_SIZE QUANTIZED RESULTS BENCH_BATCH MIN_TIME:
# a distq run config (RESULTS "" for none; 2 bench iterations at least)
run_config() {
  cat >"$1" <<INI
[model]
path = $2
[calibration]
data = $3
batches = $4
batch_size = $5
[output]
quantized = $6
${7:+results = $7}
[bench]
batch = $8
min_time = $9
min_iters = 2
INI
}

"$DISTQ" model --arch linear --seed 1 -o "$T/lin.h5" >"$T/out" 2>&1 &&
  "$DISTQ" data --shape 1024 -n 32 --seed 2 -o "$T/cal.h5" >>"$T/out" 2>&1
check "setup" "[ $? -eq 0 ]"

# An earlier, small file at the output path must survive the failed write.
"$DISTQ" data --shape 4 -n 2 -o "$FULL/model.h5" >"$T/out" 2>&1
sum=$(md5sum <"$FULL/model.h5")
limited "$DISTQ" model --arch resnet18 -o "$FULL/model.h5" >"$T/out" 2>&1
rc=$?
check "model on a full disk: exit 1 naming the file and the cause" \
  "[ $rc -eq 1 ] && grep -q '$FULL/model.h5' $T/out && grep -q '$nospace' $T/out && [ \$(grep -c '^distq model:' $T/out) -eq 1 ]"
check "model on a full disk: the earlier file is byte for byte as it was" "[ \"\$(md5sum <$FULL/model.h5)\" = '$sum' ]"
check "model on a full disk: no temporary left" "! ls $FULL | grep -q tmp"

# distq run on 2 ranks: the quantized model (4 MB) does not fit; every rank exits non-zero.
run_config "$T/run.ini" "$T/lin.h5" "$T/cal.h5" 2 16 "$FULL/lin_int8.h5" "$FULL/run.h5" 2 0
limited_ranks -np 2 "$DISTQ" run "$T/run.ini" >"$T/out" 2>&1
rc=$?
check "run on a full disk: non-zero, the quantized model named with the cause" \
  "[ $rc -ne 0 ] && grep -q 'error: rank 0: $FULL/lin_int8.h5: writing .* failed: $nospace' $T/out"
check "run on a full disk: nothing written, no temporary left" "[ -z \"\$(ls $FULL | grep -v model.h5)\" ]"

# The results file alone does not fit (tmpfs only: a file-size limit would
# stop the quantized model first): the disk filled to the last block.
if [ "$nospace" = "No space left on device" ]; then
  sed -i "s|^quantized = .*|quantized = $T/lin_int8.h5|" "$T/run.ini"
  dd if=/dev/zero of="$FULL/filler" bs=4k >/dev/null 2>&1
  "$MPIEXEC" -np 2 "$DISTQ" run "$T/run.ini" >"$T/out" 2>&1
  rc=$?
  check "results on a full disk: non-zero, the results file named" \
    "[ $rc -ne 0 ] && grep -q '$FULL/run.h5: writing .* failed: $nospace' $T/out"
  check "results on a full disk: no results file, no temporary left" "! ls $FULL | grep -q 'run.h5'"
  check "results on a full disk: the quantized model written before is whole" \
    "\"$DISTQ\" inspect $T/lin_int8.h5 >/dev/null 2>&1"
fi

# Temporaries a killed writer left (pid gone) are removed by the next write to
# that path; a live process's (this shell's) is not.
sh -c 'exit 0' &
dead=$!
wait $dead
host=$(hostname)
touch "$T/again.h5.tmp.$host.$dead" "$T/again.h5.tmp.$host.$$"
"$DISTQ" model --arch linear -o "$T/again.h5" >"$T/out" 2>&1
check "a dead writer's temporary is removed, a live one's kept" \
  "[ ! -e $T/again.h5.tmp.$host.$dead ] && [ -e $T/again.h5.tmp.$host.$$ ] && [ -s $T/again.h5 ]"

# SIGTERM while the temporary file is on disk (a 600 MB data file: its write
# takes long enough to be caught): the temporary is removed, the process dies
# of the signal, an earlier file at the path is untouched.
cp "$T/cal.h5" "$T/big.h5"
"$DISTQ" data --shape 3,224,224 -n 1000 --seed 5 -o "$T/big.h5" >"$T/out" 2>&1 &
writer=$!
seen=0
for i in $(seq 2000); do
  if ls "$T" | grep -q '^big\.h5\.tmp\.'; then seen=1; kill -TERM "$writer"; break; fi
  sleep 0.01
done
wait "$writer"
rc=$?
check "SIGTERM mid-write: the temporary removed, exit by the signal, the earlier file untouched" \
  "[ $seen -eq 1 ] && [ $rc -eq 143 ] && ! ls $T | grep -q '^big\.h5\.tmp\.' && cmp -s $T/big.h5 $T/cal.h5"
rm -f "$T/big.h5"

# A rank that cannot see its file: one config naming a relative path, each
# rank in its own directory (-wdir), as on nodes with node-local copies; in
# rank 1's the file is missing, a dangling symlink, or a shorter copy. One
# error naming rank 1 and the cause, every rank out within seconds.
run_config "$T/a.ini" "$T/lin.h5" cal_local.h5 2 16 "$T/mpmd_int8.h5" "" 2 0
mkdir -p "$T/w0" "$T/w1"
cp "$T/cal.h5" "$T/w0/cal_local.h5"
"$DISTQ" data --shape 1024 -n 20 --seed 2 -o "$T/cal_short.h5" >/dev/null
for case in "missing:none:cal_local.h5: cannot open" "dangling symlink:dangling:cal_local.h5: cannot open" \
            "shorter:short:cal_local.h5: this rank sees /images (20, 1024), rank 0 (32, 1024)"; do
  IFS=: read -r what how text <<<"$case"
  rm -f "$T/w1/cal_local.h5"
  [ "$how" = dangling ] && ln -s "$T/nowhere.h5" "$T/w1/cal_local.h5"
  [ "$how" = short ] && cp "$T/cal_short.h5" "$T/w1/cal_local.h5"
  start=$(date +%s)
  timeout 60 "$MPIEXEC" -np 1 -wdir "$T/w0" "$DISTQ" run "$T/a.ini" : -np 1 -wdir "$T/w1" "$DISTQ" run "$T/a.ini" \
    >"$T/out" 2>&1
  rc=$? took=$(($(date +%s) - start))
  echo "fault_e2e: rank 1's calibration file $what: exit $rc after $took s"
  check "rank 1's calibration file $what: non-zero within 10 s (not a hang), rank 1 and the cause named" \
    "[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -le 10 ] && grep -qF 'error: rank 1: $text' $T/out"
done
sed -i "s|^data = .*|data = $T/cal.h5|" "$T/a.ini"
printf '[model]\npath = %s\n[bogus]\n' "$T/lin.h5" >"$T/broken.ini"
timeout 60 "$MPIEXEC" -np 1 "$DISTQ" run "$T/a.ini" : -np 1 "$DISTQ" run "$T/broken.ini" >"$T/out" 2>&1
check "rank 1's config broken: refused, naming rank 1 and the line (not a hang)" \
  "[ $? -eq 1 ] && grep -q 'error: rank 1: $T/broken.ini: line 3: unknown section' $T/out"
sed "s|^batch = 2|batch = 2,4|" "$T/a.ini" >"$T/b.ini"
timeout 60 "$MPIEXEC" -np 1 "$DISTQ" run "$T/a.ini" : -np 1 "$DISTQ" run "$T/b.ini" >"$T/out" 2>&1
check "ranks with different [bench] settings: refused, naming the rank and the setting (not a hang)" \
  "[ $? -eq 1 ] && grep -q 'error: rank 1: the number of \[bench\] batch sizes is 2 here, 1 on rank 0' $T/out"
check "no quantized model from the failed runs" "[ ! -e $T/mpmd_int8.h5 ]"

# A rank SIGKILL'd mid-calibration and mid-benchmark: the job ends non-zero
# within 10 s, nothing partial is written, earlier outputs stay byte for byte.
"$DISTQ" model --arch resnet18 --seed 1 -o "$T/r18.h5" >/dev/null &&
  "$DISTQ" data --shape 3,224,224 -n 96 --seed 4 -o "$T/cal224.h5" >/dev/null
run_config "$T/kill.ini" "$T/r18.h5" "$T/cal224.h5" 12 8 "$T/kill_int8.h5" "$T/kill_run.h5" 1 60
cp "$T/lin.h5" "$T/kill_int8.h5" # an earlier file at each output path
cp "$T/cal.h5" "$T/kill_run.h5"
sums=$(cat "$T/kill_int8.h5" "$T/kill_run.h5" | md5sum)
# kill_during PHASE CONDITION: starts the run, waits until the shell
# CONDITION holds, SIGKILLs one rank; sets rc and took (seconds from the kill
# to the end of the job)
kill_during() {
  "$MPIEXEC" -np 2 "$DISTQ" run "$T/kill.ini" >"$T/out" 2>&1 &
  local job=$! i pid
  triggered=0
  for i in $(seq 600); do eval "$2" && triggered=1 && break; sleep 0.1; done
  pid=$(pgrep -f "^$DISTQ run $T/kill.ini" | tail -n 1) # a rank, not mpirun
  local killed=$(date +%s)
  [ -n "$pid" ] && kill -KILL "$pid"
  wait "$job"
  rc=$? took=$(($(date +%s) - killed))
  echo "fault_e2e: rank SIGKILL'd during $1 (pid ${pid:-none}): exit $rc, $took s after the kill"
}
kill_during calibration "grep -q 'calibrate: batch 2/' $T/out"
check "rank killed mid-calibration: non-zero within 10 s" "[ $triggered -eq 1 ] && [ $rc -ne 0 ] && [ $took -le 10 ]"
check "rank killed mid-calibration: earlier outputs byte for byte, no temporary" \
  "[ \"\$(cat $T/kill_int8.h5 $T/kill_run.h5 | md5sum)\" = '$sums' ] && ! ls $T | grep -q 'kill.*tmp'"
# the benchmark runs for 60 s once the quantized model has replaced the earlier file
kill_during benchmark "! cmp -s $T/kill_int8.h5 $T/lin.h5 && sleep 2"
check "rank killed mid-benchmark: non-zero within 10 s" "[ $triggered -eq 1 ] && [ $rc -ne 0 ] && [ $took -le 10 ]"
check "rank killed mid-benchmark: the quantized model written before is whole, the results file untouched" \
  "\"$DISTQ\" inspect $T/kill_int8.h5 >/dev/null 2>&1 && cmp -s $T/kill_run.h5 $T/cal.h5 && ! ls $T | grep -q 'kill.*tmp'"

finish

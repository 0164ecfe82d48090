# Shared by the end-to-end scripts (sourced, after DISTQ=$1):
#   source "$(dirname "$0")/e2e_lib.sh" NAME
# Open MPI allowed to run as root (CI) and to oversubscribe the cores, a
# temporary directory $T removed on exit, and the checks: ok / fail NAME
# (fail shows the tail of $T/out), check NAME 'shell condition', finish.
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d "${TMPDIR:-/tmp}/distq-$1.XXXXXX")
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -f "$T/out" ] && sed 's/^/     | /' "$T/out" | tail -n 25; }
check() { if eval "$2"; then ok "$1"; else fail "$1"; fi; }
# The training scripts' fixture: a seeded fmnist_cnn $T/m.h5 and random
# labelled 1x28x28 sets $T/train.h5 (96 images) and $T/test.h5 (30).
fmnist_fixture() {
  "$DISTQ" model --arch fmnist_cnn --seed 3 -o "$T/m.h5" >/dev/null || { echo "setup failed"; exit 1; }
  "$DISTQ" data --shape 1,28,28 -n 96 --seed 4 --classes 10 -o "$T/train.h5" >/dev/null
  "$DISTQ" data --shape 1,28,28 -n 30 --seed 5 --classes 10 -o "$T/test.h5" >/dev/null
}

# training_config NAME EPOCHS SEED LR: $T/NAME.ini training the fixture (batch
# 24, momentum 0.9, weight decay 5e-4; checkpoint $T/ckpt_NAME.h5, weights
# $T/out_NAME.h5), then whatever stdin holds (more [train] keys, sections).
training_config() {
  {
    cat <<INI
[model]
path = $T/m.h5
[train]
data = $T/train.h5
test = $T/test.h5
epochs = $2
batch_size = 24
lr = $4
momentum = 0.9
weight_decay = 5e-4
seed = $3
checkpoint = $T/ckpt_$1.h5
output = $T/out_$1.h5
INI
    cat
  } >"$T/$1.ini"
}

# np_agree CMD: `distq CMD` for 3 steps on 1, 2 and 3 ranks ($T/npN.ini from the
# script's write_config); checks each run and that np = 2, 3 end with np = 1's
# weights (abs 1e-4: fp32 sums in another order).
np_agree() {
  local np
  for np in 1 2 3; do
    write_config "np$np" 1 0
    "$MPIEXEC" -np "$np" "$DISTQ" "$1" "$T/np$np.ini" --max-steps 3 >"$T/out" 2>&1
    check "$1 np=$np" "[ $? -eq 0 ] && grep -q 'epoch 1/1' $T/out && [ -f $T/out_np$np.h5 ]"
  done
  for np in 2 3; do
    h5diff -d 1e-4 "$T/out_np1.h5" "$T/out_np$np.h5" /tensors /tensors >"$T/out" 2>&1
    check "$1: np=$np weights == np=1 weights after 3 steps (abs 1e-4)" "[ $? -eq 0 ]"
  done
}

# resume_pair CMD: `distq CMD` for 2 epochs ($T/full.ini) against 1 epoch then
# --resume to 2 ($T/part.ini), both on 2 ranks, configs from the script's
# write_config NAME EPOCHS SEED; checks the resumed weights bit for bit.
resume_pair() {
  write_config full 2 7
  "$MPIEXEC" -np 2 "$DISTQ" "$1" "$T/full.ini" >"$T/out" 2>&1
  check "$1: two epochs" "[ $? -eq 0 ] && grep -q 'epoch 2/2' $T/out"
  write_config part 1 7
  "$MPIEXEC" -np 2 "$DISTQ" "$1" "$T/part.ini" >"$T/out" 2>&1
  sed -i 's/^epochs = 1/epochs = 2/' "$T/part.ini"
  "$MPIEXEC" -np 2 "$DISTQ" "$1" "$T/part.ini" --resume >"$T/out" 2>&1
  check "$1: resume runs epoch 2 only" "[ $? -eq 0 ] && grep -q 'epoch 2/2' $T/out && ! grep -q 'epoch 1/2' $T/out"
  h5diff "$T/out_full.h5" "$T/out_part.h5" /tensors /tensors >"$T/out" 2>&1
  check "$1: resumed weights == uninterrupted, bit for bit" "[ $? -eq 0 ]"
}

# The last command of a script: the summary, and its exit status.
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

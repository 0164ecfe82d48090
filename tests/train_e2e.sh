#!/usr/bin/env bash
# Data-parallel training end to end under the real mpirun:
#   - np = 1, 2, 3 give the same weights after K steps (fp32 summation order:
#     absolute 1e-4 on weights of size ~0.1);
#   - checkpoint + --resume reproduces an uninterrupted run bit for bit.
# usage: train_e2e.sh PATH/TO/distq
set -u
DISTQ=$1
source "$(dirname "$0")/e2e_lib.sh" train

fmnist_fixture

# write_config NAME EPOCHS SEED
write_config() {
  training_config "$1" "$2" "$3" 0.05 <<INI
lr_step_epochs = 1
lr_gamma = 0.5
INI
}

np_agree train
h5diff -q "$T/m.h5" "$T/out_np1.h5" /tensors /tensors >/dev/null 2>&1
check "training changed the weights (the comparison can fail)" "[ $? -ne 0 ]"

# uninterrupted 2 epochs vs 1 epoch + resume to 2, both on 2 ranks
resume_pair train
"$MPIEXEC" -np 2 "$DISTQ" train "$T/nope.ini" >"$T/out" 2>&1
check "missing config fails with its name" "[ $? -ne 0 ] && grep -q nope.ini $T/out"

finish

#!/usr/bin/env bash
# The Linear(1024, 1000) QAT example (configs/linear_qat.ini) on 2 ranks:
# makes the model and 256 random inputs with random labels, trains with fake
# quantization, converts, and checks the int8 model with distq eval.
# usage: scripts/linear_qat.sh   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DISTQ=build/distq
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p results
"$DISTQ" model --arch linear --seed 1 -o results/linear.h5
"$DISTQ" data --shape 1024 -n 256 --classes 1000 --seed 5 -o results/linear_train.h5
OMP_NUM_THREADS=1 mpirun --bind-to none -np 2 "$DISTQ" qat configs/linear_qat.ini
"$DISTQ" eval --model results/linear_qat_int8.h5 --data results/linear_train.h5

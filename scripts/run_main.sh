#!/usr/bin/env bash
# README command one: install dependencies, build, create the default model and
# data, and run the main job on 2 MPI ranks: sharded calibration of resnet18
# with the x86 recipe, convert once, accuracy against fp32 on held-out images,
# fp32 and int8 benchmarks on every rank, results in results/resnet18_run.h5.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p results
./build/distq model --arch resnet18 --seed 1 -o results/resnet18.h5
./build/distq data --shape 3,224,224 -n 64 --seed 2 -o results/calib.h5
./build/distq data --shape 3,224,224 -n 50 --seed 3 -o results/heldout.h5
mpirun -np 2 ./build/distq run configs/resnet18_ptq.ini
./build/distq inspect results/resnet18_int8.h5 | head -n 40

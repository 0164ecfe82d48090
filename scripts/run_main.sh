#!/usr/bin/env bash
# README command one: install dependencies, build, create the default model and
# data, and run the main job: the fp32 resnet18 benchmark on 2 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p results
./build/distq model --arch resnet18 --seed 1 -o results/resnet18.h5
./build/distq data --shape 3,224,224 -n 8 --seed 2 --classes 1000 -o results/images.h5
./build/distq inspect results/resnet18.h5 | head -n 12
mpirun -np 2 ./build/distq bench --model results/resnet18.h5 --batch 1,50 --min-time 5

#!/usr/bin/env bash
# Same-run comparison of 1 rank x 2 threads vs 2 ranks x 1 thread on this
# machine: calibration wall time, all-reduce volume and aggregate int8
# throughput, from `distq run` on configs/resnet18_ptq.ini's model and data
# (create them with scripts/run_main.sh first). Results land in results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
D=./build/distq
cores=$(nproc)
for np in 1 2; do
  threads=$((cores / np))
  sed -e "s#^quantized = .*#quantized = results/scaling_q_np$np.h5#" \
      -e "s#^results = .*#results = results/scaling_np$np.h5#" \
      -e "s#^precision = .*#precision = int8#" \
      -e "s#^batch = 1,50#batch = 50#" configs/resnet18_ptq.ini > "results/scaling_np$np.ini"
  echo "== np=$np x $threads thread(s)"
  mpirun -np "$np" --bind-to none "$D" run "results/scaling_np$np.ini" --bind core --threads "$threads" \
    | grep -E "^calibration|all on|on 1 rank|bs 50 .*p50" || true
done
h5diff results/scaling_q_np1.h5 results/scaling_q_np2.h5 >/dev/null && echo "quantized models np=1 and np=2: bit-identical"

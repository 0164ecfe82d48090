#!/usr/bin/env bash
# README command two: install dependencies, build, run the whole test suite:
#   1. the Release build: unit tests, the ISA matrix, the end-to-end scripts;
#   2. the same sources under AddressSanitizer + UBSan (build-asan/): every
#      unit test (the allocation sweeps included) and the fault end-to-end
#      test under mpirun, leaks checked (Open MPI's own: tests/lsan.supp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
# Open MPI refuses root unless told; tests may run more ranks than cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
(cd build && ctest --output-on-failure)

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDISTQ_SANITIZE=ON
cmake --build build-asan -j "$(nproc)"
# Full unwinding: Open MPI's leaks are then recognisable by their frames.
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=0
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
(cd build-asan && ctest --output-on-failure -j 2 -E '@|cli_e2e|dist_e2e|train_e2e|qat_e2e|isa_e2e|onnx_e2e')

#!/usr/bin/env bash
# The layering of docs/design.md, checked on the sources: each folder under src/
# (and each public header) may include only the public headers of its own layer
# and of the layers before it; MPI calls live in src/dist alone and oneDNN calls
# in src/backend/onednn alone. Prints every violation with file and line, and
# exits 1 if there is one.
#
#   tests/layers.sh [SOURCE_ROOT]     (default: the repository holding this script)
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2

# Layers in order; a layer may depend on itself and on every layer before it.
layers=(core graph import observers backend io passes train dist bench jobs cli)
# The layer of each public header.
declare -A header_layer=(
  [status.h]=core [tensor.h]=core [timer.h]=core [reducer.h]=core
  [graph.h]=graph [passes.h]=graph
  [onnx.h]=import
  [observers.h]=observers
  [exec.h]=backend
  [io.h]=io [results.h]=io
  [quant.h]=passes
  [train.h]=train [qat.h]=train
  [dist.h]=dist
  [bench.h]=bench
  [jobs.h]=jobs [config.h]=jobs
  [inspect.h]=cli
)
declare -A rank_of
for i in "${!layers[@]}"; do rank_of[${layers[$i]}]=$i; done

fail=0
violation() { echo "layers: $*"; fail=1; }

for h in include/distq/*.h; do
  [ -n "${header_layer[$(basename "$h")]:-}" ] ||
    violation "$h: a public header with no layer (add it to tests/layers.sh)"
done

check_file() { # FILE LAYER
  local f=$1 layer=$2 line n inc dep
  while IFS=: read -r n line; do
    inc=${line#*\"distq/}
    inc=${inc%%\"*}
    dep=${header_layer[$inc]:-}
    if [ -z "$dep" ]; then
      violation "$f:$n: includes distq/$inc, a header with no layer"
    elif ((rank_of[$dep] > rank_of[$layer])); then
      violation "$f:$n: layer $layer includes distq/$inc of the later layer $dep"
    fi
  done < <(grep -n '^#include "distq/' "$f")
}

for dir in src/*/; do
  layer=$(basename "$dir")
  [ -n "${rank_of[$layer]:-}" ] || { violation "$dir: a folder that is no layer"; continue; }
  while IFS= read -r f; do check_file "$f" "$layer"; done < <(find "$dir" -name '*.[ch]')
done
for h in include/distq/*.h; do
  layer=${header_layer[$(basename "$h")]:-}
  [ -n "$layer" ] && check_file "$h" "$layer"
done

# MPI calls in src/dist only; oneDNN calls in src/backend/onednn only.
while IFS= read -r hit; do violation "$hit: an MPI call outside src/dist"; done \
  < <(grep -rnE '\bP?MPI_[A-Z][a-z_]*\(' src include | grep -v '^src/dist/' | cut -d: -f1,2)
while IFS= read -r hit; do violation "$hit: a oneDNN call outside src/backend/onednn"; done \
  < <(grep -rnE '\bdnnl_[a-z_0-9]+\(' src include | grep -v '^src/backend/onednn/' | cut -d: -f1,2)

if ((fail)); then exit 1; fi
echo "layers: ${#layers[@]} layers (${layers[*]}), every include points back, MPI and oneDNN calls in their folders"

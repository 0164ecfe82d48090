#!/usr/bin/env bash
# Launches `distq run CONFIG` with one rank per NUMA node on each host, each
# rank bound to its node by mpirun (distq sees the binding and keeps it).
#
#   scripts/launch.sh configs/resnet18_ptq.ini                 # this machine
#   HOSTFILE=hosts.txt scripts/launch.sh configs/resnet18_ptq.ini
#   RANKS_PER_NODE=2 scripts/launch.sh configs/linear_ptq.ini  # 2 ranks, bound to cores
#
# HOSTFILE       Open MPI hostfile (omit for the local machine)
# RANKS_PER_NODE ranks per host (default: its NUMA node count)
# DISTQ          the distq binary (default: build/distq)
set -euo pipefail
cfg=${1:?usage: launch.sh CONFIG.ini [distq run options]}
shift
DISTQ=${DISTQ:-$(dirname "$0")/../build/distq}
numa_nodes=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)
[ "$numa_nodes" -ge 1 ] || numa_nodes=1
per_node=${RANKS_PER_NODE:-$numa_nodes}
if [ "$per_node" -le "$numa_nodes" ]; then
  bind=(--map-by "ppr:$per_node:node" --bind-to numa)   # one rank per NUMA node
else
  bind=(--map-by "ppr:$per_node:node" --bind-to core)        # more ranks than nodes: cores
fi
hosts=1
if [ -n "${HOSTFILE:-}" ]; then
  bind+=(--hostfile "$HOSTFILE")
  hosts=$(grep -cv '^[[:space:]]*\(#\|$\)' "$HOSTFILE")
fi
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np $((hosts * per_node)) "${bind[@]}" --report-bindings "$DISTQ" run "$cfg" "$@"

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
# The last command of a script: the summary, and its exit status.
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

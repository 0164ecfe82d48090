#!/usr/bin/env bash
# tests/layers.sh can fail: on a copy of the sources with three planted
# violations (core including a jobs header, an MPI call in io, a oneDNN call
# in train) it must exit 1 and name each of them.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/../src" "$here/../include" "$tmp/"
cp "$here/layers.sh" "$tmp/"
bash "$tmp/layers.sh" "$tmp" >/dev/null || { echo "layers_selftest: the clean copy already fails"; exit 1; }
sed -i '0,/^#include "distq\//s//#include "distq\/jobs.h"\n&/' "$tmp/src/core/status.c"
echo 'static void planted(MPI_Comm c) { MPI_Barrier(c); }' >>"$tmp/src/io/h5_util.c"
echo 'static void planted(void *s) { dnnl_stream_wait(s); }' >>"$tmp/src/train/sgd.c"
out=$(bash "$tmp/layers.sh" "$tmp"); rc=$?
echo "$out"
fail=0
[ $rc -eq 1 ] || { echo "layers_selftest: exit $rc, wanted 1"; fail=1; }
for want in "src/core/status.c:.*layer core includes distq/jobs.h of the later layer jobs" \
            "src/io/h5_util.c:[0-9]*: an MPI call outside src/dist" \
            "src/train/sgd.c:[0-9]*: a oneDNN call outside src/backend/onednn"; do
  grep -q "$want" <<<"$out" || { echo "layers_selftest: no line matching '$want'"; fail=1; }
done
((fail)) || echo "layers_selftest: all three planted violations found"
exit $fail

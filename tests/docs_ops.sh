#!/bin/bash
# docs/ops.md carries `distq ops`'s table verbatim: the registry, the kernel
# tables and the documentation cannot drift apart.
set -euo pipefail
DISTQ=$1
DOC="$(dirname "$0")/../docs/ops.md"
want=$(sed -n '/^<!-- distq ops -->$/,/^<!-- end distq ops -->$/p' "$DOC" | sed '1d;$d')
got=$("$DISTQ" ops)
if [ -z "$want" ]; then
    echo "FAIL: $DOC has no table between '<!-- distq ops -->' and '<!-- end distq ops -->'"
    exit 1
fi
if ! diff <(echo "$want") <(echo "$got"); then
    echo "FAIL: $DOC differs from 'distq ops' (< doc, > program); paste the program's table into the doc"
    exit 1
fi
rows=$(echo "$got" | grep -c '^| `')
echo "docs/ops.md matches distq ops: $rows ops"
[ "$rows" -ge 14 ]

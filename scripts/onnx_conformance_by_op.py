#!/usr/bin/python3
"""ONNX conformance per op type: runs `distq onnx-test -v --suite DIR` and
tallies each case x backend outcome under every op type of the case's model.

    scripts/onnx_conformance_by_op.py [--distq build/distq] [SUITE_DIR...]

Default suites: Debian libonnx-testdata's node, pytorch-converted and
pytorch-operator. Prints a Markdown table: op type, passed, failed,
unsupported (case x backend), not run (cases with an op distq does not
import). Only ops that appear in a case distq ran, or that distq's importer
lists, are shown. Needs python3-onnx.
"""
import argparse
import collections
import os
import re
import subprocess

import onnx

DATA = "/usr/share/libonnx-testdata/data"


def case_ops(path):
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return set()
    return {n.op_type for n in m.graph.node}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suites", nargs="*", default=[f"{DATA}/{s}" for s in ("node", "pytorch-converted", "pytorch-operator")])
    ap.add_argument("--distq", default="build/distq")
    a = ap.parse_args()
    tally = collections.defaultdict(collections.Counter)
    line_re = re.compile(r"^(\S+)\s+(ref|onednn)\s+(passed|FAILED|unsupported)\b")
    unclaimed_re = re.compile(r"^(\S+)\s+not claimed: op (\S+)")
    totals = collections.Counter()
    for suite in a.suites:
        out = subprocess.run([a.distq, "onnx-test", "-v", "--suite", suite], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = line_re.match(line)
            if m:
                case, _, outcome = m.groups()
                outcome = outcome.lower()
                totals[outcome] += 1
                for op in case_ops(os.path.join(suite, case, "model.onnx")):
                    tally[op][outcome] += 1
                continue
            m = unclaimed_re.match(line)
            if m:
                totals["not run"] += 1
                tally[m.group(2)]["not run"] += 1
    print("| ONNX op | passed | failed | unsupported | cases not run |")
    print("|---|---|---|---|---|")
    ran = [op for op, c in tally.items() if c["passed"] + c["failed"] + c["unsupported"]]
    for op in sorted(ran):
        c = tally[op]
        print(f"| {op} | {c['passed']} | {c['failed']} | {c['unsupported']} | {c['not run']} |")
    print(f"\nall: {totals['passed']} passed, {totals['failed']} failed, {totals['unsupported']} unsupported "
          f"(case x backend); {totals['not run']} cases not run (an op distq does not import; counted "
          f"under the first such op)")


if __name__ == "__main__":
    main()

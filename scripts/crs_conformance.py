"""Run the CRS v3.3.4 regression tests against garrison's WAF and print the pass rate per rule file.

.venv/bin/python scripts/crs_conformance.py [TESTS_DIR] [--rules DIR] [--setup FILE] [--fail-list]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from garrison.waf import WafEngine
from garrison.waf.crs_tests import CRS3_TEST_PARANOIA, CRS3_TEST_TX, load_tests


def main() -> int:
    data = Path(os.environ.get("GARRISON_CRS_TESTS", "/work/shared/data"))
    ap = argparse.ArgumentParser()
    ap.add_argument("tests", nargs="?", default=str(data / "crs-v3.3.4-regression/tests/regression/tests"))
    ap.add_argument("--rules", default="/usr/share/modsecurity-crs/rules")
    ap.add_argument("--setup", default="/etc/modsecurity/crs/crs-setup.conf")
    ap.add_argument("--fail-list", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    t0 = time.perf_counter()
    engine = WafEngine.load([args.setup, args.rules], paranoia_level=CRS3_TEST_PARANOIA, tx=CRS3_TEST_TX)
    t1 = time.perf_counter()
    tests = [t for t in load_tests(Path(args.tests)) if args.only in t.title]
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    failed = []
    for t in tests:
        row = per[t.rule_file]
        if t.request is None or t.not_applicable:
            row[2] += 1
            continue
        ok = t.judge(engine.inspect(t.request))
        row[0] += ok
        row[1] += 1
        if not ok:
            failed.append(t.title)
    t2 = time.perf_counter()
    print(f"{'rule file':45} {'pass':>5} {'run':>5} {'n/a':>4} {'rate':>7}")
    tp = tr = tn = 0
    for name, (p, r, na) in sorted(per.items()):
        tp, tr, tn = tp + p, tr + r, tn + na
        print(f"{name:45} {p:5} {r:5} {na:4} {100 * p / max(r, 1):6.1f}%")
    print(f"{'TOTAL':45} {tp:5} {tr:5} {tn:4} {100 * tp / max(tr, 1):6.1f}%")
    print(f"load {t1 - t0:.1f}s, {len(tests)} tests in {t2 - t1:.1f}s; {len(engine.unsupported)} unsupported")
    if args.fail_list:
        print("failed:", " ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

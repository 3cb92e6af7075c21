#!/usr/bin/env python3
"""What the audit log takes off durable writes: the same write route on two nodes, one of
them built with ZT_BENCH_NO_AUDIT (build-bench-noaudit/: changes are not audited; a build
for this measurement only), alternated round by round. Writes its section of RESULTS.md.

Usage: bench/audit_cost.py [--rounds N] [--duration S]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as B  # noqa: E402  (wrk, targets, nodes: the suite's own machinery)
from benchlib import SRC, build, git_commit, write_section  # noqa: E402


def version(dirname):
    return subprocess.run([os.path.join(dirname, "zhengtong"), "version"], capture_output=True,
                          text=True, check=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=4)
    args = ap.parse_args()
    with_audit = os.path.join(SRC, "build-bench")
    without = os.path.join(SRC, "build-bench-noaudit")
    build(with_audit)
    build(without, "-DZT_BENCH_NO_AUDIT=ON")
    if "NOT audited" in version(with_audit) or "NOT audited" not in version(without):
        raise SystemExit("audit_cost: build-bench must audit and build-bench-noaudit must not")
    nodes = []
    try:
        a = B.start_zhengtong(with_audit, "zhengtong")
        nodes.append(a)
        b = B.start_zhengtong(without, "zhengtong without audit")
        nodes.append(b)
        post = os.path.join(HERE, "post.lua")
        env_a, env_b = {"ZT_BENCH_TOKEN": B.sign_in(a)}, {"ZT_BENCH_TOKEN": B.sign_in(b)}
        rows = []
        for conns in (50, 1):
            ta = B.Target("audited -c%d" % conns, a, "/hello/counter", conns, post, env_a)
            tb = B.Target("not audited -c%d" % conns, b, "/hello/counter", conns, post, env_b)
            B.alternate([ta, tb], args.rounds, args.duration, 1)
            rows.append((ta, tb, B.paired_ratios(ta, tb)))
        used_a = B.metrics(a).get("zt_lmdb_used_bytes", 0)
        used_b = B.metrics(b).get("zt_lmdb_used_bytes", 0)
    finally:
        for n in nodes:
            n.stop()

    costs = {"commit": git_commit()}
    L = ["## One audit append per write: what it takes off durable writes", ""]
    L.append("Written by `bench/audit_cost.py` at commit `%s`. The same route, `POST "
             "/hello/counter` with a signed-in caller's token (one record read, incremented, "
             "written, and acknowledged after its batch's fsync), on two nodes: the Release "
             "build, and one built with `-DZT_BENCH_NO_AUDIT=ON` (its changes leave no audit "
             "record; it says so in `zhengtong version` and at every start, and exists for this "
             "measurement only). wrk on CPU 1, the nodes on CPU 0, %d rounds of %d s "
             "alternating the two; medians." % (costs["commit"], args.rounds, args.duration))
    L.append("")
    L.append("| connections | audited (req/s) | not audited (req/s) | audited / not audited "
             "(median of rounds) | taken off by the audit append |")
    L.append("| ---: | ---: | ---: | ---: | ---: |")
    for ta, tb, ratios in rows:
        r = statistics.median(ratios)
        key = "c%d_loss" % ta.conns
        costs[key] = round(1 - r, 4)
        L.append("| %d | %.0f | %.0f | %.3f (%s) | **%.1f %%** |"
                 % (ta.conns, ta.median("rps"), tb.median("rps"), r,
                    ", ".join("%.2f" % x for x in ratios), 100 * (1 - r)))
    L.append("")
    L.append("Storage in use at the end: %.1f MB audited, %.1f MB not (the counter is "
             "rewritten in place; what grows is the log)." % (used_a / 2 ** 20, used_b / 2 ** 20))
    L.append("")
    L.append("A record is about 200 bytes (its fields in binary, its BLAKE2b hash and the "
             "previous record's), and a batch's records are appended as one LMDB value: "
             "besides the instructions (CALLGRIND.md: building the record as the change is "
             "made, one BLAKE2b each at commit), each commit writes that value's pages and the "
             "log's last leaf and branch pages, and the file grows by them.")
    L.append("")
    L.append("<!-- audit-cost-json %s -->" % json.dumps(costs, sort_keys=True))
    write_section("audit-cost", "\n".join(L))
    B.log("wrote the audit-cost section of bench/RESULTS.md")


if __name__ == "__main__":
    main()

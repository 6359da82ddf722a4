"""Merges `switchboard-bench --json` results of A, B, A, B rounds into one Markdown table.

Usage: python table.py OUT.md ab1.json sb1.json ab2.json sb2.json ...
Each figure is the mean of that server's rounds. Ratios read "how many times better
Switchboard is": throughput SB/AG, latency AG/SB, memory AG/SB.
"""

import json
import sys
from collections import defaultdict


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def fmt(x, digits=1):
    return "–" if x != x else f"{x:,.{digits}f}"


def main():
    out, files = sys.argv[1], sys.argv[2:]
    by = {"abstractgateway": defaultdict(list), "switchboard": defaultdict(list)}
    rss = {"abstractgateway": defaultdict(list), "switchboard": defaultdict(list)}
    order = []
    for f in files:
        doc = json.load(open(f))
        t = doc["target"]
        for r in doc["rows"]:
            if r["scenario"] not in order:
                order.append(r["scenario"])
            by[t][r["scenario"]].append(r)
        for k in ("rss_idle_kib", "rss_loaded_kib"):
            if doc.get(k):
                rss[t][k].append(doc[k] / 1024)
    lines = [
        "| scenario | AG per s | SB per s | × | AG p50 ms | SB p50 ms | × | AG p99 ms | SB p99 ms | × | errors AG/SB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        ag, sb = by["abstractgateway"].get(name, []), by["switchboard"].get(name, [])
        if not ag or not sb:
            continue
        f = lambda rows, k: mean([r[k] for r in rows])
        a_t, s_t = f(ag, "per_s"), f(sb, "per_s")
        a50, s50 = f(ag, "p50_ms"), f(sb, "p50_ms")
        a99, s99 = f(ag, "p99_ms"), f(sb, "p99_ms")
        errs = f"{sum(r['errors'] for r in ag)}/{sum(r['errors'] for r in sb)}"
        ratio = lambda x, y: fmt(x / y if y else float("nan"))
        lines.append(
            f"| {name} | {fmt(a_t, 0)} | {fmt(s_t, 0)} | {ratio(s_t, a_t)} "
            f"| {fmt(a50, 2)} | {fmt(s50, 2)} | {ratio(a50, s50)} "
            f"| {fmt(a99, 2)} | {fmt(s99, 2)} | {ratio(a99, s99)} | {errs} |"
        )
    for k, label in (("rss_idle_kib", "RSS idle, MiB"), ("rss_loaded_kib", "RSS after load, MiB")):
        a, s = mean(rss["abstractgateway"][k]), mean(rss["switchboard"][k])
        lines.append(f"| {label} | | | | {fmt(a)} | {fmt(s)} | {fmt(a / s if s else float('nan'))} | | | | |")
    only = [n for n in order if not by["abstractgateway"].get(n)]
    if only:
        lines += ["", "Switchboard only (AbstractGateway has no equivalent bundle here):", ""]
        lines += ["| scenario | per s | p50 ms | p90 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]
        for name in only:
            rows = by["switchboard"][name]
            m = lambda k: mean([r[k] for r in rows])
            lines.append(
                f"| {name} | {fmt(m('per_s'), 0)} | {fmt(m('p50_ms'), 2)} | {fmt(m('p90_ms'), 2)} "
                f"| {fmt(m('p99_ms'), 2)} | {sum(r['errors'] for r in rows)} |"
            )
    text = "\n".join(lines) + "\n"
    open(out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()

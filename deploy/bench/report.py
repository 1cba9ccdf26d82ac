"""The Markdown table of a benchmark measured in rounds (deploy/bench/upstreams.sh, tls.sh,
websocket.sh).

Reads `rounds` (lines `round|label|requests_per_s [p50 p99]`, latencies as wrk prints them,
e.g. 95.00us or 1.20ms) and `order` (lines `label|reference label`): one row per label, its
mean requests/s, each round's, its ratio to its reference in the same round (the mean over
the rounds, and their median, which one disturbed round cannot move: the machines are shared),
and its median p99 with its ratio to the reference's (blank when not measured).
    python3 deploy/bench/report.py ROUNDS ORDER
"""
import statistics
import sys
from collections import defaultdict


def us(latency):
    for unit, scale in (("us", 1), ("ms", 1000), ("s", 1_000_000)):
        if latency.endswith(unit):
            return float(latency[: -len(unit)]) * scale
    raise ValueError(latency)


runs = defaultdict(dict)
for line in open(sys.argv[1]):
    round_, label, figures = line.rstrip("\n").split("|")
    parts = figures.split()
    p99 = us(parts[2]) if len(parts) == 3 else None
    runs[label][int(round_)] = (float(parts[0]), p99)
order = [line.split("|") for line in open(sys.argv[2]).read().splitlines()]
print("| measured | requests/s (mean) | each round | / reference (mean; median of rounds) | reference | p99 (median) | p99 / reference |")
print("|---|---|---|---|---|---|---|")
for label, ref in order:
    rows, base = runs[label], runs[ref]
    ratios = [rps / base[r][0] for r, (rps, _) in rows.items()]
    p99s = [p for _, p in rows.values() if p is not None]
    ref_p99s = [p for _, p in base.values() if p is not None]
    p99 = f"{statistics.median(p99s):.0f} µs" if p99s else ""
    p99_ratio = f"{statistics.median(p99s) / statistics.median(ref_p99s):.2f}" if p99s and ref_p99s else ""
    each = ", ".join(f"{rps:,.0f}" for rps, _ in rows.values())
    print(f"| {label} | {statistics.mean(r for r, _ in rows.values()):,.0f} | {each} "
          f"| {statistics.mean(ratios):.3f}; {statistics.median(ratios):.3f} | {ref} | {p99} | {p99_ratio} |")

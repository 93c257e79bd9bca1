#!/usr/bin/env python3
"""Summarise loadtest/compare.sh results: medians over repetitions per scenario
and target, wsrelay's ratio to nginx and HAProxy, and added latency over direct.

    summarize.py OUT                       -> Markdown table on stdout
    summarize.py OUT --median-hgrm S T     -> path of the .hgrm of the median run
"""
import json
import statistics
import sys
from pathlib import Path

TARGETS = ["direct", "nginx", "haproxy", "wsrelay"]
PEERS = ["nginx", "haproxy"]


def load(out):
    rows = [json.loads(l) for l in (Path(out) / "results.ndjson").read_text().splitlines() if l.strip()]
    by = {}
    for r in rows:
        by.setdefault((r["scenario"], r["target"]), []).append(r)
    return by


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def main(out):
    by = load(out)
    scenarios = []
    for (s, _t) in by:
        if s not in scenarios:
            scenarios.append(s)
    lines = []
    reps = max((len(v) for v in by.values()), default=0)
    lines.append(f"Medians over {reps} repetition(s); proxies pinned to CPU 0, load + echo on CPU 1.\n")
    for s in scenarios:
        lines.append(f"### {s}\n")
        if s.startswith("lat"):
            lines.append("| target | p50 µs | p99 µs | p99.9 µs | max µs | added p50 µs | added p99 µs | added p99.9 µs | errors |")
            lines.append("|---|---|---|---|---|---|---|---|---|")
            d = {t: by.get((s, t), []) for t in TARGETS}
            base = {k: med(d["direct"], k) for k in ("p50_us", "p99_us", "p99.9_us")}
            added = {}
            for t in TARGETS:
                if not d[t]:
                    continue
                m = {k: med(d[t], k) for k in ("p50_us", "p99_us", "p99.9_us", "max_us")}
                a = {k: (m[k] - base[k]) if (t != "direct" and m[k] is not None and base[k] is not None) else None
                     for k in ("p50_us", "p99_us", "p99.9_us")}
                added[t] = a
                errs = sum(r.get("errors", 0) for r in d[t])
                lines.append(f"| {t} | {fmt(m['p50_us'])} | {fmt(m['p99_us'])} | {fmt(m['p99.9_us'])} | {fmt(m['max_us'])} | "
                             f"{fmt(a['p50_us'])} | {fmt(a['p99_us'])} | {fmt(a['p99.9_us'])} | {errs} |")
            for p in PEERS:
                if p in added and "wsrelay" in added:
                    w, q = added["wsrelay"], added[p]
                    lines.append(f"\nwsrelay / {p}, added latency: p50 {ratio(w['p50_us'], q['p50_us'])}, "
                                 f"p99 {ratio(w['p99_us'], q['p99_us'])}, p99.9 {ratio(w['p99.9_us'], q['p99.9_us'])}")
        elif s == "idle":
            lines.append("| target | bytes per idle session | open | errors |")
            lines.append("|---|---|---|---|")
            d = {t: by.get((s, t), []) for t in TARGETS}
            for t in TARGETS:
                if d[t]:
                    lines.append(f"| {t} | {fmt(med(d[t], 'bytes_per_session'), 0)} | {fmt(med(d[t], 'open'), 0)} | "
                                 f"{sum(r.get('errors', 0) for r in d[t])} |")
            for p in PEERS:
                if d.get(p) and d.get("wsrelay"):
                    lines.append(f"\nwsrelay / {p}: {ratio(med(d['wsrelay'], 'bytes_per_session'), med(d[p], 'bytes_per_session'))} the memory per session")
        else:
            unit = "sessions" if s == "connect" else "msgs"
            lines.append(f"| target | {unit}/s | proxy CPU s | {unit} per proxy CPU-second | p50 µs | p99 µs | errors |")
            lines.append("|---|---|---|---|---|---|---|")
            d = {t: by.get((s, t), []) for t in TARGETS}
            for t in TARGETS:
                if d[t]:
                    lines.append(f"| {t} | {fmt(med(d[t], 'rate_per_s'), 0)} | {fmt(med(d[t], 'proxy_cpu_s'), 2)} | "
                                 f"{fmt(med(d[t], 'per_proxy_cpu_s'), 0)} | {fmt(med(d[t], 'p50_us'))} | {fmt(med(d[t], 'p99_us'))} | "
                                 f"{sum(r.get('errors', 0) for r in d[t])} |")
            for p in PEERS:
                if d.get(p) and d.get("wsrelay"):
                    lines.append(f"\nwsrelay / {p}: rate {ratio(med(d['wsrelay'], 'rate_per_s'), med(d[p], 'rate_per_s'))}, "
                                 f"per proxy CPU-second {ratio(med(d['wsrelay'], 'per_proxy_cpu_s'), med(d[p], 'per_proxy_cpu_s'))}")
        lines.append("")
    print("\n".join(lines))


def median_hgrm(out, s, t):
    runs = load(out).get((s, t), [])
    if not runs:
        return
    runs = sorted(runs, key=lambda r: r.get("p50_us") or 0)
    r = runs[len(runs) // 2]
    path = Path(out) / "hgrm" / f"{s}-{t}-{r['rep']}.hgrm"
    if path.exists():
        print(path)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[2] == "--median-hgrm":
        median_hgrm(sys.argv[1], sys.argv[3], sys.argv[4])
    else:
        main(sys.argv[1])

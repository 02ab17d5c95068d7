#!/usr/bin/env python3
"""Summary of scripts/cluster-bench.sh's raw results, as Markdown on stdout.

Usage: cluster-report.py OUT_DIR   (reads machine.txt, echo.jsonl, broadcast.jsonl, pingpong.txt)

Medians over the rounds, then every round, so that the spread (mostly the shared machine) is
in the document next to the figure.
"""
import json
import re
import statistics
import sys
from pathlib import Path


def jsonl(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(us):
    return "–" if us is None else f"{us / 1000:.1f}"


def num(x):
    return "–" if x is None else f"{x:,.0f}"


def echo_section(rows):
    if not rows:
        return []
    out = ["## Relay echo, remote vs local target", ""]
    rounds = sorted({r["round"] for r in rows})
    by = {(r["round"], r["side"]): r for r in rows}
    ratios = []
    out += [
        "| round | load, 1 min (remote / local run) | remote msgs/s | local msgs/s | ratio | remote p50 / p99 µs | local p50 / p99 µs | CPU s a / b / nats (remote) | CPU s a / b / nats (local) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in rounds:
        rem, loc = by.get((n, "remote")), by.get((n, "local"))
        if not rem or not loc:
            continue
        ratio = rem["msgs_per_sec"] / loc["msgs_per_sec"] if loc["msgs_per_sec"] else None
        ratios.append(ratio)

        def cpu(r):
            return f"{r.get('cpu_a', 0):.1f} / {r.get('cpu_b', 0):.1f} / {r.get('cpu_nats', 0):.1f}"

        out.append(
            f"| {n} | {rem['load'].split()[0]} / {loc['load'].split()[0]} | {num(rem['msgs_per_sec'])} | {num(loc['msgs_per_sec'])} | "
            f"{ratio:.2f} | {rem['p50_us']} / {rem['p99_us']} | {loc['p50_us']} / {loc['p99_us']} | "
            f"{cpu(rem)} | {cpu(loc)} | {rem['errors']} / {loc['errors']} |"
        )
    rem_med = med([r["msgs_per_sec"] for r in rows if r["side"] == "remote"])
    loc_med = med([r["msgs_per_sec"] for r in rows if r["side"] == "local"])
    out += [
        "",
        f"Median: remote **{num(rem_med)}** msgs/s, local **{num(loc_med)}** msgs/s, "
        f"median ratio **{med(ratios):.2f}** (ratio of the medians {rem_med / loc_med:.2f}); "
        f"round-trip p50 remote {med([r['p50_us'] for r in rows if r['side'] == 'remote'])} µs, "
        f"local {med([r['p50_us'] for r in rows if r['side'] == 'local'])} µs.",
        "",
    ]
    # CPU time per echo (a round trip), per process: where the time goes, independent of how
    # busy the shared core was.
    for side in ("remote", "local"):
        sel = [r for r in rows if r["side"] == side and r["messages"]]
        parts = []
        for proc in ("a", "b", "nats"):
            v = med([r.get(f"cpu_{proc}", 0) / r["messages"] * 1e6 for r in sel])
            parts.append(f"{proc} {v:.1f}")
        total = med([sum(r.get(f"cpu_{p}", 0) for p in ("a", "b", "nats")) / r["messages"] * 1e6 for r in sel])
        out.append(f"CPU µs per echo, {side} (median): " + ", ".join(parts) + f"; all {total:.1f}.")
    out.append("")
    return out


def broadcast_section(rows):
    if not rows:
        return []
    out = ["## Broadcast delivery latency (ms)", ""]
    out += [
        "| round | setup | load | delivered / expected | errors | all p50 / p95 / p99 / max | node a p50 / p95 / p99 / max | node b p50 / p95 / p99 / max | ramp s | CPU s a / b / nats |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def quad(d):
        if not d:
            return "–"
        return " / ".join(ms(d[k]) for k in ("p50_us", "p95_us", "p99_us", "max_us"))

    for r in sorted(rows, key=lambda r: (r["round"], r["setup"])):
        urls = r.get("per_url", [])
        a = urls[0] if len(urls) > 0 else None
        b = urls[1] if len(urls) > 1 else None
        cpu = f"{r.get('cpu_a', 0):.1f} / {r['cpu_b']:.1f} / {r.get('cpu_nats', 0):.1f}" if "cpu_b" in r else f"{r.get('cpu_a', 0):.1f} / – / {r.get('cpu_nats', 0):.1f}"
        out.append(
            f"| {r['round']} | {r['setup']} | {r['load']} → {r.get('load_end', '?')} | {r['delivered']:,} / {r['expected']:,} | {r['errors']} | "
            f"{quad(r)} | {quad(a)} | {quad(b)} | {r['ramp_seconds']:.1f} | {cpu} |"
        )
    out.append("")
    for setup in ("two-nodes", "one-node"):
        sel = [r for r in rows if r["setup"] == setup]
        if not sel:
            continue
        parts = [
            f"{k[:-3]} {ms(med([r[k] for r in sel]))}" for k in ("p50_us", "p95_us", "p99_us", "max_us")
        ]
        line = f"Median, {setup}: all receivers " + ", ".join(parts) + " ms"
        for i, node in ((0, "a"), (1, "b")):
            us = [r["per_url"][i] for r in sel if len(r.get("per_url", [])) > i]
            if us:
                line += f"; node {node} p95 {ms(med([u['p95_us'] for u in us]))}, p99 {ms(med([u['p99_us'] for u in us]))}"
        out += [line + ".", ""]
    return out


def to_us(text):
    m = re.match(r"([\d.]+)(ns|µs|us|ms|s)$", text)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v * {"ns": 1e-3, "µs": 1, "us": 1, "ms": 1e3, "s": 1e6}[unit]


def pingpong_section(path):
    if not path.exists():
        return []
    rows, rnd, load = [], None, None
    for line in path.read_text().splitlines():
        m = re.match(r"round (\d+) load (?!at end)(.*)", line)
        if m:
            rnd, load = int(m.group(1)), m.group(2)
            continue
        m = re.search(r"ping-pong (\S+) .* p50 (\S+) p99 (\S+) max (\S+) \((\d+) rt/s\)", line)
        if m:
            rows.append({"round": rnd, "load": load, "where": m.group(1), "p50": to_us(m.group(2)),
                         "p99": to_us(m.group(3)), "max": to_us(m.group(4)), "rts": int(m.group(5))})
    if not rows:
        return ["## Ping-pong", "", "(skipped or no result; see logs/pingpong.log)", ""]
    out = ["## Ping-pong, 64 B, 1 in flight, 10k round trips (in-process nodes, µs)", "",
           "| round | load | where | p50 | p99 | max | rt/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['round']} | {r['load']} | {r['where']} | {r['p50']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | {r['rts']:,} |")
    out.append("")
    for where in ("cross-node", "local"):
        sel = [r for r in rows if r["where"] == where]
        if sel:
            out.append(f"Median, {where}: p50 **{med([r['p50'] for r in sel]):.0f} µs**, "
                       f"p99 **{med([r['p99'] for r in sel]):.0f} µs** ({len(sel)} runs).")
    return out + [""]


def main():
    out_dir = Path(sys.argv[1])
    lines = ["# Cluster benchmarks (scripts/cluster-bench.sh)", "", "```"]
    lines += (out_dir / "machine.txt").read_text().splitlines()
    lines += ["```", ""]
    lines += echo_section(jsonl(out_dir / "echo.jsonl"))
    lines += broadcast_section(jsonl(out_dir / "broadcast.jsonl"))
    lines += pingpong_section(out_dir / "pingpong.txt")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

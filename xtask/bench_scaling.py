#!/usr/bin/env python3
"""Scaling: how throughput and p99 move with the number of accounts and with
the number of notes per account (`cargo xtask bench scaling`).

Two hosts on loopback, the migrate plugin (Wasm) and the native baseline,
each with 4 new-store shards; every account is in migration mode (list reads
both stores). Data grows step by step through the API, and at each step wrk
runs get, list and update on the Wasm host and then the native host:

- accounts axis: 1 → 10 → 100 → 1k → 10k accounts with 10 notes each; each
  request picks a random account and note among all of them;
- notes axis: one account with 10 → 100 → 1k → 10k → 100k notes.

Publishes the tables to BENCHMARKS.md and the figures to
docs/bench-results.json (section "scaling").

Environment: BENCH_SCALE_SECONDS (per wrk run, default 3),
BENCH_SCALE_MAX_ACCOUNTS / BENCH_SCALE_MAX_NOTES (largest step; defaults
10000 / 100000).
"""

import os
import shutil
import sys
import tempfile
import time
from datetime import date

from benchlib import CONNECTIONS, ensure_wrk, load_accounts, load_notes, publish, rss_mib, start, table, wrk, write_lua

SECONDS = int(os.environ.get("BENCH_SCALE_SECONDS", "3"))
MAX_ACCOUNTS = int(os.environ.get("BENCH_SCALE_MAX_ACCOUNTS", "10000"))
MAX_NOTES = int(os.environ.get("BENCH_SCALE_MAX_NOTES", "100000"))
NOTES_PER_ACCOUNT = 10
SCENARIOS = ["get", "list", "update"]
IMPLS = ["wasm", "native"]


def steps(smallest, largest):
    """Powers of ten from `smallest` to `largest`."""
    return [n for n in (1, 10, 100, 1000, 10_000, 100_000) if smallest <= n <= largest]


def measure(hosts, ids, script):
    """wrk on every scenario, Wasm then native; returns one row per scenario."""
    rows = []
    for scenario in SCENARIOS:
        row = {"scenario": scenario}
        for impl in IMPLS:
            base, _ = hosts[impl]
            row[impl] = wrk(base, scenario, ids[impl], script, SECONDS)
        row["throughput_ratio"] = round(row["wasm"]["rps"] / row["native"]["rps"], 3)
        rows.append(row)
    return rows


def more_accounts(base, have, want):
    """Adds accounts with NOTES_PER_ACCOUNT notes each up to `want` accounts."""
    return load_accounts(base, want - len(have) // NOTES_PER_ACCOUNT, NOTES_PER_ACCOUNT, True)


def more_notes(base, have, want):
    """Adds notes to the one account up to `want` notes."""
    if not have:
        return load_accounts(base, 1, want, True)
    return load_notes(base, have[0].split()[0], want - len(have))


def axis(name, points, grow, workdir, script):
    """Starts a Wasm and a native host, grows both through `points`, and
    measures at every point."""
    hosts, procs = {}, []
    for impl, router in [("wasm", "plugin"), ("native", "native-migrate")]:
        # One account takes every connection on the notes axis: lift the
        # per-account cap (fairness is measured in bench_fairness.py), or
        # half the requests would be 429s.
        args = ["--router", router, "--shards", "4", "--max-requests-per-account", str(CONNECTIONS)]
        proc, base = start(args, workdir, f"{name}-{impl}")
        procs.append(proc)
        hosts[impl] = (base, proc.pid)
    have = {impl: [] for impl in IMPLS}
    results = []
    try:
        for point in points:
            started = time.monotonic()
            ids = {}
            for impl, (base, _) in hosts.items():
                have[impl] += grow(base, have[impl], point)
                ids[impl] = os.path.join(workdir, f"{name}-{impl}.ids")
                with open(ids[impl], "w") as f:
                    f.write("\n".join(have[impl]) + "\n")
            loaded = time.monotonic() - started
            rows = measure(hosts, ids, script)
            rss = {impl: rss_mib(pid, "VmRSS") for impl, (_, pid) in hosts.items()}
            results.append({name: point, "rows": rows, "rss_mib": rss, "load_seconds": round(loaded, 1)})
            summary = "  ".join(f"{r['scenario']} {r['wasm']['rps']:.0f}/{r['native']['rps']:.0f}" for r in rows)
            print(f"{name} {point:>6}: {summary} req/s (wasm/native); loading took {loaded:.0f} s", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    return results


def run():
    ensure_wrk()
    workdir = tempfile.mkdtemp(prefix="bench-scaling-")
    script = write_lua(workdir)
    try:
        results = {
            "accounts": axis("accounts", steps(1, MAX_ACCOUNTS), more_accounts, workdir, script),
            "notes": axis("notes", steps(10, MAX_NOTES), more_notes, workdir, script),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"] = {
        "date": date.today().isoformat(),
        "command": "cargo xtask bench scaling",
        "wrk": f"-t2 -c{CONNECTIONS} -d{SECONDS}s per scenario and host, Wasm then native",
        "data": f"4 shards, migration mode; accounts axis {NOTES_PER_ACCOUNT} notes per account; notes of 200 B",
    }
    return results


def markdown(results):
    out = [f"Run {results['meta']['date']}: wrk {results['meta']['wrk']}; {results['meta']['data']}."]
    for name, label in [("accounts", "accounts (10 notes each)"), ("notes", "notes in the account")]:
        rows = []
        for point in results[name]:
            cells = [f"{point[name]:,}"]
            for r in point["rows"]:
                w, n = r["wasm"], r["native"]
                cells.append(f"{w['rps']:,.0f} / {n['rps']:,.0f} ({r['throughput_ratio']:.2f})")
                cells.append(f"{w['p99_ms']:.2f} / {n['p99_ms']:.2f} ms")
            cells.append(f"{point['rss_mib']['wasm']} / {point['rss_mib']['native']} MiB")
            rows.append(cells)
        header = [label]
        for scenario in SCENARIOS:
            header += [f"{scenario} req/s Wasm / native (ratio)", f"{scenario} p99 Wasm / native"]
        header.append("RSS Wasm / native")
        out.append(table(header, rows))
    return "\n\n".join(out)


if __name__ == "__main__":
    results = run()
    publish("scaling", results, markdown(results))

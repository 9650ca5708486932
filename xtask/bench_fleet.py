#!/usr/bin/env python3
"""Flip propagation and the cost of a flip, on 3 hosts sharing one data dir
(`cargo xtask bench fleet`).

Runs `notes-host sim` (which starts the 3 hosts itself) with flips and no
restarts: once with no client traffic (the flip protocol alone), then with 2,
4 and 8 strict clients (one account each). Publishes the table to
BENCHMARKS.md and the reports to docs/bench-results.json (section "fleet").
"""
import json
import os
import pathlib
import subprocess
import tempfile
from datetime import date

from benchlib import HOST, publish, table

SECONDS = os.environ.get("BENCH_SECONDS", "10")
RUNS = [("idle (flips only)", ["--idle", "--accounts", "8", "--flip-every-ms", "20"])] + [
    (f"{n} clients", ["--accounts", str(n), "--flip-every-ms", "50"]) for n in (2, 4, 8)
]


def run():
    reports = []
    for name, args in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "report.json"
            cmd = [HOST, "sim", "--hosts", "3", "--seconds", SECONDS, "--seed", "1", "--json", str(out), *args]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            report = json.loads(out.read_text())
        report["run"] = name
        reports.append(report)
    return {"meta": {"date": date.today().isoformat(), "seconds_per_run": int(SECONDS)}, "rows": reports}


def markdown(results):
    rows = []
    for r in results["rows"]:
        during = r["othersOpsPerSecPerAccountDuringFlips"]
        outside = r["opsPerSecPerAccountOutsideFlips"]
        share = f" ({during / outside:.0%})" if outside else ""
        flipped = (f"{r['flippedAccountLatencyMsP50']:.2f} / {r['flippedAccountLatencyMsP99']:.2f} ms"
                   if r["flippedAccountRequests"] else "–")
        others = f"{during:.0f} ops/s{share}" if r["flippedAccountRequests"] else "–"
        rows.append([r["run"], f"{r['opsPerSec']:.0f}", f"{r['flipsOk']} ok, {r['flipsFailed']} failed",
                     f"{r['flipMsP50']:.2f} ms", f"{r['flipMsP99']:.2f} ms", f"{r['flipMsMax']:.2f} ms", flipped,
                     others, f"{outside:.0f} ops/s" if outside else "–", sum(r["anomalies"].values())])
    return f"Run {results['meta']['date']}, {results['meta']['seconds_per_run']} s per row:\n\n" + table(
        ["load (3 hosts)", "ops/s", "flips", "flip p50", "flip p99", "flip max", "flipped account during flip p50 / p99",
         "other accounts during flips, per account", "outside flips, per account", "anomalies"], rows)


if __name__ == "__main__":
    results = run()
    publish("fleet", results, markdown(results))

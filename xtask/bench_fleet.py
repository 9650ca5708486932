#!/usr/bin/env python3
"""Flip propagation and the cost of a flip, on 3 hosts sharing one data dir.

Runs `notes-host sim` (which starts the 3 hosts itself) with flips and no
restarts: once with no client traffic (the flip protocol alone), then with 2,
4 and 8 strict clients (one account each). Prints a Markdown table for
BENCHMARKS.md and writes docs/fleet-bench-results.json.
"""
import json, os, pathlib, subprocess, tempfile

root = pathlib.Path(__file__).resolve().parent.parent
target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
host = target / "release" / "notes-host"
SECONDS = os.environ.get("BENCH_SECONDS", "10")

runs = [("idle (flips only)", ["--idle", "--accounts", "8", "--flip-every-ms", "20"])] + [
    (f"{n} clients", ["--accounts", str(n), "--flip-every-ms", "50"]) for n in (2, 4, 8)
]
results = []
for name, args in runs:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "report.json"
        cmd = [str(host), "sim", "--hosts", "3", "--seconds", SECONDS, "--seed", "1", "--json", str(out), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        report = json.loads(out.read_text())
    report["run"] = name
    results.append(report)

(root / "docs").mkdir(exist_ok=True)
(root / "docs" / "fleet-bench-results.json").write_text(json.dumps(results, indent=2) + "\n")
print("| load (3 hosts) | ops/s | flips | flip p50 | flip p99 | flip max | flipped account during flip p50 / p99 | other accounts during flips, per account | outside flips, per account | anomalies |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in results:
    during = r["othersOpsPerSecPerAccountDuringFlips"]
    outside = r["opsPerSecPerAccountOutsideFlips"]
    share = f" ({during / outside:.0%})" if outside else ""
    flipped = (f"{r['flippedAccountLatencyMsP50']:.2f} / {r['flippedAccountLatencyMsP99']:.2f} ms"
               if r["flippedAccountRequests"] else "–")
    print(f"| {r['run']} | {r['opsPerSec']:.0f} | {r['flipsOk']} ok, {r['flipsFailed']} failed "
          f"| {r['flipMsP50']:.2f} ms | {r['flipMsP99']:.2f} ms | {r['flipMsMax']:.2f} ms | {flipped} "
          f"| {during:.0f} ops/s{share} | {outside:.0f} ops/s | {sum(r['anomalies'].values())} |")

#!/usr/bin/env python3
"""HTTP benchmarks: the Wasm plugin and the native baseline against a
hand-written service, alternating in one run (`cargo xtask bench http`
builds first, then runs this).

Four hosts on loopback, each with its own data dir: {wasm plugin, native
baseline} x {4 new-store shards, plain mode (--shards 0)}, and the
**reference**: `notes-reference` (xtask/reference), the note routes written
by hand with axum and rusqlite, reads inline, nothing pluggable. Every one
gets the same data: ACCOUNTS accounts per mode with NOTES notes each. For
each scenario and mode, wrk runs on the Wasm host, the reference, the
ceiling and the native host, ROUNDS times, alternating, so machine drift
hits all alike. Every row is reported against the reference. The ceiling
is context: nginx serving the same note as a static file for reads (get,
list, mix), the disk's fsync rate (4 KiB appends) for writes (update,
create); see bench_ceilings.py. Publishes the tables to BENCHMARKS.md and
the figures to docs/bench-results.json (section "http").

Environment: BENCH_SECONDS (per wrk run, default 3), BENCH_ROUNDS (default 2),
BENCH_CONNECTIONS (default 16).
"""

import json
import os
import shutil
import subprocess
import urllib.request
import sys
import tempfile
from datetime import date

from benchlib import (CONNECTIONS, TARGET, call, fsync_probe, start_nginx, ensure_wrk, load_accounts, mean_runs, publish, rss_mib, start,
                      table, wrk, write_lua)


def start_reference(workdir):
    """The hand-written service (xtask/reference); returns (process, base URL)."""
    proc = subprocess.Popen([os.path.join(TARGET, "release", "notes-reference"), os.path.join(workdir, "reference"), "0"],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "reference.log"), "w"), text=True)
    line = proc.stdout.readline()
    if not line:
        sys.exit("notes-reference did not start; see reference.log")
    return proc, json.loads(line)["url"]

SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
ACCOUNTS = 8
NOTES = 50

# `create` last: it grows every account, which would make later lists longer.
SCENARIOS = ["get", "list", "update", "mix", "create"]
WRITES = {"update", "create"}
MODES = ["plain", "migration", "rollback"]


def populate(base, migrating):
    """ACCOUNTS accounts with NOTES notes each; returns 'account note' lines.
    For migration and rollback, half of each account's notes are moved to the
    new store, as mid-migration."""
    lines = load_accounts(base, ACCOUNTS, NOTES, False)
    if migrating is not None:
        by_account = {}
        for line in lines:
            account, note = line.split()
            by_account.setdefault(account, []).append(note)
        for account, notes in by_account.items():
            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": True})
            for note in notes[: NOTES // 2]:
                call(base, "PUT", f"/accounts/{account}/notes/{note}", {"content": "y" * 200})
            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": migrating})
    return lines


def run():
    ensure_wrk()
    workdir = tempfile.mkdtemp(prefix="bench-http-")
    script = write_lua(workdir)
    hosts, procs, pids = {}, [], {}
    for impl, router in [("wasm", "plugin"), ("native", "native-migrate")]:
        for shards in ["4", "0"]:
            proc, base = start(["--router", router, "--shards", shards], workdir, f"{impl}-{shards}")
            procs.append(proc)
            hosts[(impl, shards)] = base
            pids[f"{impl}, {shards} shards"] = proc.pid
    reference, reference_base = start_reference(workdir)
    procs.append(reference)
    pids["reference"] = reference.pid
    try:
        ids = {}
        for impl in ["wasm", "native"]:
            for mode in MODES:
                base = hosts[(impl, "0" if mode == "plain" else "4")]
                lines = populate(base, {"plain": None, "migration": True, "rollback": False}[mode])
                path = os.path.join(workdir, f"{impl}-{mode}.ids")
                open(path, "w").write("\n".join(lines) + "\n")
                ids[(impl, mode)] = path
        # The reference has one store and no migration: every mode's rows
        # run on the same plain data.
        reference_ids = os.path.join(workdir, "reference.ids")
        open(reference_ids, "w").write("\n".join(load_accounts(reference_base, ACCOUNTS, NOTES, False)) + "\n")
        memory = {name: {"idle_rss_mib": rss_mib(pid, "VmRSS")} for name, pid in pids.items()}
        account, note = open(ids[("wasm", "plain")]).readline().split()
        body = urllib.request.urlopen(f"{hosts[('wasm', '0')]}/accounts/{account}/notes/{note}").read()
        nginx, nginx_base = start_nginx(workdir, body)
        procs.append(nginx)
        nginx_ids = os.path.join(workdir, "nginx.ids")
        open(nginx_ids, "w").write("x note.json\n")
        nginx_script = os.path.join(workdir, "nginx.lua")
        open(nginx_script, "w").write('request = function() return wrk.format("GET", "/note.json") end\n')
        results = []
        for scenario in SCENARIOS:
            for mode in MODES:
                runs = {"wasm": [], "native": [], "reference": []}
                ceilings = []
                for _ in range(ROUNDS):
                    for impl in ["wasm", "reference", "ceiling", "native"]:
                        if impl == "ceiling" and scenario in WRITES:
                            ceilings.append(fsync_probe(workdir, 4096)[0])
                        elif impl == "ceiling":
                            ceilings.append(wrk(nginx_base, "get", nginx_ids, nginx_script, SECONDS)["rps"])
                        elif impl == "reference":
                            runs[impl].append(wrk(reference_base, scenario, reference_ids, script, SECONDS))
                        else:
                            base = hosts[(impl, "0" if mode == "plain" else "4")]
                            runs[impl].append(wrk(base, scenario, ids[(impl, mode)], script, SECONDS))
                row = {"scenario": scenario, "mode": mode}
                for impl, rs in runs.items():
                    row[impl] = mean_runs(rs)
                row["ceiling"] = {"what": "fsyncs/s" if scenario in WRITES else "nginx req/s", "rate": round(sum(ceilings) / len(ceilings))}
                row["to_ceiling"] = round(row["wasm"]["rps"] / row["ceiling"]["rate"], 3)
                row["wasm_to_reference"] = round(row["wasm"]["rps"] / row["reference"]["rps"], 3)
                row["native_to_reference"] = round(row["native"]["rps"] / row["reference"]["rps"], 3)
                row["throughput_ratio"] = round(row["wasm"]["rps"] / row["native"]["rps"], 3)
                row["p99_ratio"] = round(row["wasm"]["p99_ms"] / row["native"]["p99_ms"], 3)
                results.append(row)
                print(f"{scenario:7} {mode:9} wasm {row['wasm']['rps']:9.0f} req/s  native {row['native']['rps']:9.0f} req/s  "
                      f"reference {row['reference']['rps']:9.0f} req/s  wasm/ref {row['wasm_to_reference']:.2f}  "
                      f"native/ref {row['native_to_reference']:.2f}", file=sys.stderr)
        for name, pid in pids.items():
            memory[name]["peak_rss_mib"] = rss_mib(pid, "VmHWM")
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(workdir, ignore_errors=True)

    meta = {
        "date": date.today().isoformat(),
        "command": "cargo xtask bench http",
        "wrk": f"-t2 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds alternating wasm / reference / ceiling / native "
               "(reference: notes-reference, the hand-written service; ceiling: nginx serving the note as a static file "
               "for reads, the disk's 4 KiB fsyncs/s for writes)",
        "data": f"{ACCOUNTS} accounts per mode x {NOTES} notes (200 B); migration/rollback accounts have half their notes moved",
    }
    return {"meta": meta, "rows": results, "memory": memory}


def markdown(results):
    http = table(
        ["scenario", "mode", "reference req/s", "Wasm req/s", "Wasm / reference", "native req/s", "native / reference",
         "Wasm / native", "ceiling", "Wasm to ceiling", "Wasm p50", "native p50", "Wasm p99", "native p99", "non-2xx"],
        [[r["scenario"], r["mode"], f"{r['reference']['rps']:,.0f}", f"{r['wasm']['rps']:,.0f}", f"**{r['wasm_to_reference']:.2f}**",
          f"{r['native']['rps']:,.0f}", f"**{r['native_to_reference']:.2f}**", f"{r['throughput_ratio']:.2f}",
          f"{r['ceiling']['rate']:,} {r['ceiling']['what']}", f"{r['to_ceiling']:.2f}",
          f"{r['wasm']['p50_ms']:.2f} ms", f"{r['native']['p50_ms']:.2f} ms", f"{r['wasm']['p99_ms']:.2f} ms",
          f"{r['native']['p99_ms']:.2f} ms", f"{r['wasm']['non_2xx'] + r['native']['non_2xx']:.0f}"] for r in results["rows"]],
    )
    memory = table(
        ["host", "RSS after populating (idle)", "peak RSS over the run (VmHWM)"],
        [[name, f"{m['idle_rss_mib']} MiB", f"{m['peak_rss_mib']} MiB"] for name, m in results["memory"].items()],
    )
    meta = results["meta"]
    return f"Run {meta['date']}: wrk {meta['wrk']}; {meta['data']}.\n\n{http}\n\nHost memory (same run; `/proc/<pid>/status`):\n\n{memory}"


if __name__ == "__main__":
    results = run()
    publish("http", results, markdown(results))

#!/usr/bin/env python3
"""One strategy in three languages (`cargo xtask bench languages`): the
migrate plugin in Rust, and its ports to Python (componentize-py) and
JavaScript (componentize-js), each on its own host, alternating in one run.

Per language: the component's size; upload and compile (`POST /plugins` of a
new component: validate, compile, store); GET of a note through wrk (the
default isolation: a fresh instance per request, then with the plugin set to
keep instances per account, `PUT /plugins/{digest}/instances`); and what the host reports
of the instances (`GET /plugins` usage: memory at start, mean call time).
The Python and JavaScript components are the ones `cargo xtask test` builds
into target/plugins/examples/. Publishes to BENCHMARKS.md and
docs/bench-results.json (section "languages").

Environment: BENCH_SECONDS (per wrk run, default 3), BENCH_ROUNDS (default 3),
BENCH_CONNECTIONS (default 16).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date

from benchlib import CONNECTIONS, TARGET, call, ensure_wrk, load_accounts, mean_runs, publish, start, table, wrk, write_lua

SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ACCOUNTS = 8
NOTES = 50
PER_ACCOUNT = {"mode": "per-account", "maxRequests": 1000, "maxSeconds": 60}
PLUGINS = {
    "Rust": os.path.join(TARGET, "plugins", "migrate.wasm"),
    "Python": os.path.join(TARGET, "plugins", "examples", "migrate-python.wasm"),
    "JavaScript": os.path.join(TARGET, "plugins", "examples", "migrate-js.wasm"),
}


def upload_seconds(base, path):
    """Seconds of `POST /plugins` for a component the host has not seen."""
    body = open(path, "rb").read()
    request = urllib.request.Request(base + "/plugins", data=body, method="POST", headers={"content-type": "application/octet-stream"})
    started = time.perf_counter()
    with urllib.request.urlopen(request) as r:
        r.read()
        assert r.status == 201, r.status
    return time.perf_counter() - started


def run():
    ensure_wrk()
    for language, path in PLUGINS.items():
        if not os.path.isfile(path):
            sys.exit(f"{path} is missing ({language}): `cargo xtask test` builds the example plugins")
    workdir = tempfile.mkdtemp(prefix="bench-languages-")
    script = write_lua(workdir)
    procs, hosts, ids = [], {}, {}
    try:
        uploads = {}
        for language, path in PLUGINS.items():
            proc, base = start(["--plugin", path], workdir, language)
            procs.append(proc)
            hosts[language] = base
            lines = load_accounts(base, ACCOUNTS, NOTES, True)
            ids[language] = os.path.join(workdir, f"{language}.ids")
            open(ids[language], "w").write("\n".join(lines) + "\n")
            # Upload and compile, on a host of its own whose catalog holds
            # only the legacy-only plugin.
            probe, probe_base = start(["--plugin", os.path.join(TARGET, "plugins", "legacy-only.wasm")], workdir, f"{language}-upload")
            uploads[language] = upload_seconds(probe_base, path)
            probe.terminate()
        runs = {language: [] for language in PLUGINS}
        for _ in range(ROUNDS):
            for language in PLUGINS:
                runs[language].append(wrk(hosts[language], "get", ids[language], script, SECONDS))
        fresh_usage = {language: call(hosts[language], "GET", "/plugins")["active"].get("usage", {}) for language in PLUGINS}
        # The same load with each plugin keeping instances per account.
        for language in PLUGINS:
            digest = call(hosts[language], "GET", "/plugins")["active"]["digest"]
            call(hosts[language], "PUT", f"/plugins/{digest}/instances", PER_ACCOUNT)
        kept_runs = {language: [] for language in PLUGINS}
        for _ in range(ROUNDS):
            for language in PLUGINS:
                kept_runs[language].append(wrk(hosts[language], "get", ids[language], script, SECONDS))
        rows = []
        for language, path in PLUGINS.items():
            active = call(hosts[language], "GET", "/plugins")["active"]
            usage = fresh_usage[language]
            rows.append({
                "language": language,
                "plugin": active["plugin"],
                "wasm_bytes": os.path.getsize(path),
                "upload_seconds": round(uploads[language], 2),
                "get": mean_runs(runs[language]),
                "get_per_account": mean_runs(kept_runs[language]),
                "start_memory_mib": round(usage.get("startMemoryBytes", 0) / 2**20, 1),
                "mean_call_micros": usage.get("meanCallMicros"),
            })
            print(f"{language:10} GET {rows[-1]['get']['rps']:8.0f} req/s  p50 {rows[-1]['get']['p50_ms']:.2f} ms  "
                  f"call {rows[-1]['mean_call_micros']} µs  upload {rows[-1]['upload_seconds']} s", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(workdir, ignore_errors=True)
    rust = rows[0]["get"]
    for row in rows:
        row["get_rps_vs_rust"] = round(row["get"]["rps"] / rust["rps"], 3)
        row["per_account_vs_rust"] = round(row["get_per_account"]["rps"] / rust["rps"], 3)
        row["per_account_vs_rust_per_account"] = round(row["get_per_account"]["rps"] / rows[0]["get_per_account"]["rps"], 3)
        row["get_p50_vs_rust"] = round(row["get"]["p50_ms"] / rust["p50_ms"], 2)
    meta = {
        "date": date.today().isoformat(),
        "command": "cargo xtask bench languages",
        "wrk": f"-t2 -c{CONNECTIONS} -d{SECONDS}s GET, {ROUNDS} rounds alternating the three hosts",
        "data": f"{ACCOUNTS} accounts x {NOTES} notes (200 B) in migration mode, per host; 4 new-store shards",
        "isolation": "first the default, a fresh pooled instance per request; then each plugin set to keep instances per account "
                     "(`plugin instances DIGEST per-account`, at most 1000 requests and 60 s an instance)",
    }
    return {"meta": meta, "rows": rows}


def markdown(results):
    m = results["meta"]
    rows = [[r["language"], f"`{r['plugin']}`", f"{r['wasm_bytes'] / 1e6:.2f} MB" if r["wasm_bytes"] > 1e6 else f"{r['wasm_bytes'] / 1e3:.1f} KB",
             f"{r['upload_seconds']:.2f} s", f"{r['get']['rps']:.0f}", f"{r['get_rps_vs_rust']:.2f}", f"{r['get']['p50_ms']:.2f} ms",
             f"{r['get_p50_vs_rust']:.1f}×", f"{r['mean_call_micros']:.0f} µs", f"{r['start_memory_mib']} MiB"]
            for r in results["rows"]]
    kept = [[r["language"], f"{r['get']['rps']:.0f}", f"{r['get_per_account']['rps']:.0f}", f"{r['get_per_account']['p50_ms']:.2f} ms",
             f"{r['per_account_vs_rust']:.2f}", f"{r['per_account_vs_rust_per_account']:.2f}"]
            for r in results["rows"]]
    return (f"Run {m['date']} (`{m['command']}`): {m['wrk']}; {m['data']}; {m['isolation']}.\n\n"
            + table(["language", "plugin", ".wasm", "upload + compile", "GET req/s (fresh)", "vs Rust", "GET p50", "p50 vs Rust",
                     "mean call, fresh (host's figure)", "memory at start"], rows)
            + "\n\nThe same load with each plugin keeping instances per account:\n\n"
            + table(["language", "fresh req/s", "per-account req/s", "per-account p50", "vs Rust (fresh)", "vs Rust (per-account)"], kept))


if __name__ == "__main__":
    results = run()
    publish("languages", results, markdown(results))

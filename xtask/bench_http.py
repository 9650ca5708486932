#!/usr/bin/env python3
"""HTTP benchmarks: the Wasm plugin against the native baseline, alternating
in one run (`cargo xtask bench-http` builds first, then runs this).

Four hosts on loopback, each with its own data dir: {wasm plugin, native
baseline} x {4 new-store shards, plain mode (--shards 0)}. Every host gets the
same data: ACCOUNTS accounts per mode with NOTES notes each. For each scenario
and mode, wrk runs on the Wasm host then the native host, ROUNDS times,
alternating, so machine drift hits both alike. Prints a Markdown table and
writes docs/bench-results.json.

Environment: BENCH_SECONDS (per wrk run, default 3), BENCH_ROUNDS (default 2),
BENCH_CONNECTIONS (default 16).
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HOST = os.path.join(TARGET, "release", "notes-host")
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
ACCOUNTS = 8
NOTES = 50

# wrk script: picks a random account and note per request; the scenario
# decides the request. Account and note ids come from a file per mode.
LUA = r"""
local ids = {}
local scenario = os.getenv("SCENARIO")
function init(args)
  for line in io.lines(args[1]) do
    local account, note = line:match("(%S+) (%S+)")
    ids[#ids + 1] = { account, note }
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
local function pick() return ids[math.random(#ids)] end
local function get(p) return wrk.format("GET", "/accounts/" .. p[1] .. "/notes/" .. p[2]) end
local function list(p) return wrk.format("GET", "/accounts/" .. p[1] .. "/notes") end
local function update(p)
  return wrk.format("PUT", "/accounts/" .. p[1] .. "/notes/" .. p[2], nil, '{"content":"updated by wrk"}')
end
local function create(p) return wrk.format("POST", "/accounts/" .. p[1] .. "/notes", nil, '{"content":"created by wrk"}') end
function request()
  local p = pick()
  if scenario == "get" then return get(p)
  elseif scenario == "list" then return list(p)
  elseif scenario == "update" then return update(p)
  elseif scenario == "create" then return create(p)
  else -- a Notely-like mix: mostly reads
    local r = math.random(100)
    if r <= 60 then return get(p) elseif r <= 80 then return list(p)
    elseif r <= 92 then return update(p) else return create(p) end
  end
end
"""

# `create` last: it grows every account, which would make later lists longer.
SCENARIOS = ["get", "list", "update", "mix", "create"]
MODES = ["plain", "migration", "rollback"]


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def start(args, workdir, name):
    data = os.path.join(workdir, name)
    out = open(os.path.join(workdir, name + ".out"), "w+")
    proc = subprocess.Popen(
        [HOST, "serve", "--listen", "127.0.0.1:0", "--data-dir", data] + args,
        stdout=out, stderr=open(os.path.join(workdir, name + ".log"), "w"),
    )
    for _ in range(400):
        out.seek(0)
        line = out.readline()
        if line.startswith("listening on "):
            return proc, line.split()[-1]
        time.sleep(0.05)
    sys.exit(f"{name} did not start")


def rss_mib(pid, field):
    """VmRSS (now) or VmHWM (peak) of a process, in MiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def populate(base, migrating):
    """ACCOUNTS accounts with NOTES notes each; returns 'account note' lines."""
    lines = []
    for _ in range(ACCOUNTS):
        account = call(base, "POST", "/accounts", {"name": "bench"})["id"]
        notes = [call(base, "POST", f"/accounts/{account}/notes", {"content": "x" * 200})["id"] for _ in range(NOTES)]
        if migrating is not None:
            # Half the notes moved to the new store, as mid-migration.
            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": True})
            for note in notes[: NOTES // 2]:
                call(base, "PUT", f"/accounts/{account}/notes/{note}", {"content": "y" * 200})
            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": migrating})
        lines += [f"{account} {note}" for note in notes]
    return lines


def wrk(base, scenario, ids_file, script):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", script, base, "--", ids_file],
        env=dict(os.environ, SCENARIO=scenario), capture_output=True, text=True, check=True,
    ).stdout

    def latency_ms(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency_ms(50),
        "p99_ms": latency_ms(99),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def main():
    if not shutil.which("wrk"):
        print("installing wrk (Debian package)", file=sys.stderr)
        subprocess.run("apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)",
                       shell=True, check=True)
    workdir = tempfile.mkdtemp(prefix="bench-http-")
    script = os.path.join(workdir, "bench.lua")
    open(script, "w").write(LUA)
    hosts, procs, pids = {}, [], {}
    for impl, strategy in [("wasm", "plugin"), ("native", "native-migrate")]:
        for shards in ["4", "0"]:
            proc, base = start(["--strategy", strategy, "--shards", shards], workdir, f"{impl}-{shards}")
            procs.append(proc)
            hosts[(impl, shards)] = base
            pids[f"{impl}, {shards} shards"] = proc.pid
    try:
        ids = {}
        for impl in ["wasm", "native"]:
            for mode in MODES:
                base = hosts[(impl, "0" if mode == "plain" else "4")]
                lines = populate(base, {"plain": None, "migration": True, "rollback": False}[mode])
                path = os.path.join(workdir, f"{impl}-{mode}.ids")
                open(path, "w").write("\n".join(lines) + "\n")
                ids[(impl, mode)] = path
        memory = {name: {"idle_rss_mib": rss_mib(pid, "VmRSS")} for name, pid in pids.items()}
        results = []
        for scenario in SCENARIOS:
            for mode in MODES:
                runs = {"wasm": [], "native": []}
                for _ in range(ROUNDS):
                    for impl in ["wasm", "native"]:
                        base = hosts[(impl, "0" if mode == "plain" else "4")]
                        runs[impl].append(wrk(base, scenario, ids[(impl, mode)], script))
                row = {"scenario": scenario, "mode": mode}
                for impl, rs in runs.items():
                    row[impl] = {k: round(sum(r[k] for r in rs) / len(rs), 3) for k in rs[0]}
                row["throughput_ratio"] = round(row["wasm"]["rps"] / row["native"]["rps"], 3)
                row["p99_ratio"] = round(row["wasm"]["p99_ms"] / row["native"]["p99_ms"], 3)
                results.append(row)
                print(f"{scenario:7} {mode:9} wasm {row['wasm']['rps']:9.0f} req/s  native {row['native']['rps']:9.0f} req/s  "
                      f"ratio {row['throughput_ratio']:.2f}  p99 ratio {row['p99_ratio']:.2f}", file=sys.stderr)
        for name, pid in pids.items():
            memory[name]["peak_rss_mib"] = rss_mib(pid, "VmHWM")
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(workdir, ignore_errors=True)

    meta = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}",
        "command": "cargo xtask bench-http",
        "wrk": f"-t2 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds alternating wasm/native",
        "data": f"{ACCOUNTS} accounts per mode x {NOTES} notes (200 B); migration/rollback accounts have half their notes moved",
    }
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "bench-results.json"), "w") as f:
        json.dump({"meta": meta, "http": results, "memory": memory}, f, indent=2)
    print("| scenario | mode | Wasm req/s | native req/s | ratio | Wasm p50 | native p50 | Wasm p99 | native p99 | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        w, n = r["wasm"], r["native"]
        print(f"| {r['scenario']} | {r['mode']} | {w['rps']:,.0f} | {n['rps']:,.0f} | {r['throughput_ratio']:.2f} | "
              f"{w['p50_ms']:.2f} ms | {n['p50_ms']:.2f} ms | {w['p99_ms']:.2f} ms | {n['p99_ms']:.2f} ms | {r['p99_ratio']:.2f} |")
    print()
    print("| host | RSS after populating (idle) | peak RSS over the run (VmHWM) |")
    print("|---|---|---|")
    for name, m in memory.items():
        print(f"| {name} | {m['idle_rss_mib']} MiB | {m['peak_rss_mib']} MiB |")


if __name__ == "__main__":
    main()

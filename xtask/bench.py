#!/usr/bin/env python3
"""The benchmark suite (`cargo xtask bench [PART…]`, after a release build).

Parts, in the order `all` runs them:
  micro    criterion micro-benchmarks (host/benches/micro.rs)
  http     HTTP load, Wasm plugin against the native baseline (bench_http.py)
  scaling  throughput and p99 against accounts and notes per account (bench_scaling.py)
  profile  perf profile of the list and mix requests, Wasm and native
  fleet    flip propagation across 3 hosts (bench_fleet.py)
  plugins  plugin upload, load and hot-swap times (bench-plugins.sh)
  fairness other accounts' throughput beside one account's looping plugin (bench_fairness.py)
  jobs     a backfill's throughput, alone and beside readers (bench_jobs.py)
  postgres a host on PostgreSQL against one on SQLite, flips across 3 hosts (bench_postgres.py)
  writes   updates and creates at 64 connections, writes per fsync (bench_writes.py)
  ceilings nginx serving a static note and the disk's fsync rate, alternating with the host (bench_ceilings.py)
  memory   RSS before and after a burst of 100k-id lists, and how soon it comes back (bench_memory.py)
  languages the migrate strategy in Rust, Python and JavaScript (bench_languages.py)
  soak     millions of mixed requests with flips and jobs and no scraper: RSS, fds, threads (bench_soak.py)

Not in `all`: `compare REV` builds revision REV in a worktree and runs its
host alternating with this build's, with the same load (bench_compare.py).

Each part writes its section of docs/bench-results.json and its generated
block of BENCHMARKS.md (see benchlib.publish); `all` also rewrites the
header block: machine, versions, commands and date.
"""

import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date

from benchlib import HOST, ROOT, TARGET, ensure_wrk, load_accounts, publish, start, table, wrk, write_lua

PARTS = ["micro", "http", "scaling", "profile", "fleet", "plugins", "fairness", "jobs", "postgres", "writes", "ceilings", "memory", "languages", "soak", "stores"]


# ---- micro ---------------------------------------------------------------

# (criterion id, what it measures), in table order.
MICRO = [
    ("dispatch/wasm/get", "get through the Wasm plugin: fresh instance from the pooling allocator, bind the account, call, one store read, return the note"),
    ("dispatch/native/get", "the same get, router compiled into the host"),
    ("dispatch/wasm-reused-instance/get", "the Wasm get on a kept instance (`--unsafe-reuse-instances`): what isolation costs is the difference to the first row"),
    ("dispatch/wasm/update", "update through the Wasm plugin (get, put, clean-up of the other store)"),
    ("dispatch/native/update", "the same update, native"),
    ("dispatch/wasm/list-50", "list of 50 ids through the Wasm plugin (reads both stores)"),
    ("dispatch/native/list-50", "the same list, native"),
    ("dispatch/wasm/list-1000", "list of 1,000 ids through the Wasm plugin"),
    ("dispatch/native/list-1000", "the same list, native"),
    ("wasmtime/minimal-component-fresh", "wasmtime's floor: a one-function component (17-page memory) fresh from the host's pool, called, dropped"),
    ("wasmtime/minimal-component-reused", "the same call on a kept instance"),
    ("wasmtime/migrate-instantiate-drop", "the migrate plugin (3 core instances, 25 imports) instantiated and dropped, no call"),
    ("store/get", "SQLite store: get one note (primary key)"),
    ("store/get-missing", "SQLite store: get a note that is not there"),
    ("store/list-ids-50", "SQLite store: ids of an account with 50 notes"),
    ("store/list-ids-1000", "SQLite store: ids of an account with 1,000 notes"),
    ("store/put", "SQLite store: put a newer version (one commit, fsync)"),
    ("store/delete-if-not-newer", "SQLite store: delete and leave a tombstone (one commit, fsync)"),
    ("flag/flag-state-sql", "the flag read: flag and any flip of the account, one SQLite statement"),
    ("flag/fleet-admit", "`Fleet::admit`: count the request in flight, then the same read"),
]


def micro():
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "bench", "-p", "notes-host", "--bench", "micro"], cwd=ROOT, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    results = {}
    for bench_id, _ in MICRO:
        path = os.path.join(TARGET, "criterion", *criterion_dir(bench_id).split("/"), "new", "estimates.json")
        with open(path) as f:
            median = json.load(f)["median"]
        results[bench_id] = {
            "median_ns": round(median["point_estimate"], 1),
            "ci95_ns": [round(median["confidence_interval"]["lower_bound"], 1), round(median["confidence_interval"]["upper_bound"], 1)],
        }
    return {"meta": {"date": date.today().isoformat(), "command": "cargo bench -p notes-host --bench micro"}, "rows": results}


def criterion_dir(bench_id):
    """criterion's directory for an id: the group, then the function id with
    '/' replaced by '_'."""
    group, name = bench_id.split("/", 1)
    return f"{group}/{name.replace('/', '_')}"


def duration(ns):
    return f"{ns / 1000:,.2f} µs" if ns >= 1000 else f"{ns:,.0f} ns"


def micro_markdown(results):
    rows = results["rows"]
    lines = [[f"`{bench_id}`", what, duration(rows[bench_id]["median_ns"]),
              f"{duration(rows[bench_id]['ci95_ns'][0])} – {duration(rows[bench_id]['ci95_ns'][1])}"] for bench_id, what in MICRO]
    boundary = []
    for op in ["get", "update", "list-50", "list-1000"]:
        wasm, native = rows[f"dispatch/wasm/{op}"]["median_ns"], rows[f"dispatch/native/{op}"]["median_ns"]
        boundary.append([op, duration(wasm), duration(native), duration(wasm - native)])
    return (f"Run {results['meta']['date']}: `{results['meta']['command']}` (criterion, median and its 95% interval).\n\n"
            + table(["benchmark", "what", "median", "95% interval"], lines)
            + "\n\nThe cost of the Wasm boundary, per call (Wasm minus native, same in-memory store):\n\n"
            + table(["operation", "Wasm", "native", "boundary"], boundary))


# ---- profile -------------------------------------------------------------

# Where a sample's symbol belongs, first match wins.
CATEGORIES = [
    ("kernel: thread wake-ups and switches", lambda dso, sym: dso.startswith("[kernel") and re.search(
        r"finish_task_switch|_raw_spin_unlock_irq|futex|schedule|wake_up|switch_to|pick_next|enqueue|dequeue", sym) is not None),
    ("kernel: loopback TCP, epoll", lambda dso, sym: dso.startswith("[kernel") and re.search(
        r"tcp|ip_|sock|skb|net|epoll|dev_|loopback|napi|inet", sym) is not None),
    ("kernel: disk (fsync)", lambda dso, sym: dso.startswith("[kernel") and re.search(r"ext4|blk|jbd2|fsync|bio|nvme|virtio", sym) is not None),
    ("kernel: other", lambda dso, sym: dso.startswith("[kernel")),
    ("guest code (plugin, JIT-compiled)", lambda dso, sym: dso.startswith("[JIT]")),
    ("wasmtime: calls, lowering and lifting values", lambda dso, sym: "wasmtime" in sym),
    ("SQLite", lambda dso, sym: re.match(r"(sqlite3|pcache|btree|pager|wal|vdbe|balance|getAndInitPage|moveToChild|rusqlite)", sym, re.I) is not None),
    ("malloc / free", lambda dso, sym: re.search(r"malloc|free|unlink_chunk|realloc", sym) is not None and "libc" in dso),
    ("JSON (serde_json)", lambda dso, sym: "serde_json" in sym),
    ("HTTP (hyper, axum)", lambda dso, sym: re.search(r"hyper|axum|http::", sym) is not None),
    ("tokio runtime", lambda dso, sym: "tokio" in sym),
]


def ensure_perf():
    if shutil.which("perf"):
        return True
    subprocess.run("apt-get install -y linux-perf >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y linux-perf >/dev/null 2>&1)",
                   shell=True)
    return shutil.which("perf") is not None


def categorize(report):
    """Shares of samples per category, from `perf report --sort dso,sym`."""
    shares = {name: 0.0 for name, _ in CATEGORIES}
    shares["other host code"] = 0.0
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+(?: tid \d+)?)\s+\[.\]\s+(.*)$", line)
        if not m:
            continue
        share, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        name = next((n for n, test in CATEGORIES if test(dso, sym)), "other host code")
        shares[name] += share
    return {k: round(v, 1) for k, v in shares.items()}


def profile():
    ensure_wrk()
    if not ensure_perf():
        return {"skipped": "perf is not installed and could not be installed"}
    workdir = tempfile.mkdtemp(prefix="bench-profile-")
    script = write_lua(workdir)
    results = {"meta": {"date": date.today().isoformat(),
                        "how": "perf record -F 1999 -g on the host process for 5 s while wrk -t2 -c16 runs; plain mode, 8 accounts x 50 notes"},
               "rows": []}
    try:
        for impl, router in [("wasm", "plugin"), ("native", "native-migrate")]:
            proc, base = start(["--router", router, "--shards", "0"], workdir, impl)
            try:
                ids = os.path.join(workdir, f"{impl}.ids")
                with open(ids, "w") as f:
                    f.write("\n".join(load_accounts(base, 8, 50, False)) + "\n")
                for scenario in ["list", "mix"]:
                    data = os.path.join(workdir, f"{impl}-{scenario}.perf")
                    recorder = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-p", str(proc.pid), "-o", data, "--", "sleep", "5"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    load = wrk(base, scenario, ids, script, 5)
                    recorder.wait()
                    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none"],
                                            capture_output=True, text=True).stdout
                    if not report.strip():
                        return {"skipped": "perf record found no samples (perf_event_paranoid?)"}
                    results["rows"].append({"impl": impl, "scenario": scenario, "rps_under_perf": load["rps"], "shares": categorize(report)})
            finally:
                proc.terminate()
                proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def profile_markdown(results):
    if "skipped" in results:
        return f"Not run: {results['skipped']}."
    rows = results["rows"]
    columns = [f"{r['scenario']}, {r['impl']}" for r in rows]
    names = list(rows[0]["shares"])
    body = [[name] + [f"{r['shares'][name]:.1f}%" for r in rows] for name in names]
    body.append(["req/s while profiled"] + [f"{r['rps_under_perf']:,.0f}" for r in rows])
    return f"Run {results['meta']['date']}: {results['meta']['how']}. Share of the host's CPU samples:\n\n" + table(["where", *columns], body)


# ---- plugins ----------------------------------------------------------------

def plugins():
    out = subprocess.run(["bash", os.path.join(ROOT, "xtask", "bench-plugins.sh")], check=True, capture_output=True, text=True,
                         env=dict(os.environ, CARGO_TARGET_DIR=TARGET)).stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("|") and "---" not in line]
    return {"meta": {"date": date.today().isoformat(), "command": "cargo xtask bench plugins"}, "markdown": out, "rows": rows}


def plugins_markdown(results):
    return f"Run {results['meta']['date']}:\n\n{results['markdown']}"


# ---- the suite -------------------------------------------------------------

def versions():
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "not installed"
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()

    def locked(crate):
        m = re.search(rf'name = "{crate}"\nversion = "([^"]+)"', lock)
        return m.group(1) if m else "?"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
    mem = next((int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem // 1024} GiB RAM, {platform.system()} {platform.release()}",
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "rustc": first_line(["rustc", "--version"]),
        "wasmtime": locked("wasmtime"),
        "axum": locked("axum"),
        "rusqlite": locked("rusqlite"),
        "libsqlite3-sys (bundles SQLite)": locked("libsqlite3-sys"),
        "criterion": locked("criterion"),
        "wrk": first_line(["sh", "-c", "wrk -v 2>&1"]),
        "perf": first_line(["perf", "--version"]),
        "python": platform.python_version(),
    }


def header(meta):
    rows = [[k, v] for k, v in meta["versions"].items()]
    parts = ", ".join(f"{p} {s:.0f} s" for p, s in meta["seconds"].items())
    return (f"Generated by `{meta['command']}` on {meta['date']} ({parts}). Host binary: `{os.path.relpath(HOST, ROOT)}`, "
            "release profile; plugins: release, `opt-level = 3`, LTO. Load generator and host share the machine.\n\n"
            + table(["", "version"], rows))


def runner(part):
    """(run, markdown) of a part."""
    if part in ("http", "scaling", "fleet", "fairness", "jobs", "postgres", "writes", "ceilings", "memory", "languages", "soak", "stores"):
        module = importlib.import_module(f"bench_{part}")
        return module.run, module.markdown
    return {"micro": (micro, micro_markdown), "profile": (profile, profile_markdown), "plugins": (plugins, plugins_markdown)}[part]


def run_part(part):
    run, markdown = runner(part)
    print(f"bench: {part}", file=sys.stderr)
    results = run()
    publish(part, results, markdown(results))


def main(argv):
    if argv[:1] == ["compare"]:
        if len(argv) != 2:
            sys.exit("usage: cargo xtask bench compare REV")
        import bench_compare
        results = bench_compare.run(argv[1])
        publish("compare", results, bench_compare.markdown(results))
        return
    parts = argv or ["all"]
    if parts == ["all"]:
        parts = PARTS
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        sys.exit(f"unknown part {unknown[0]!r}; parts: all {' '.join(PARTS)}")
    seconds = {}
    for part in parts:
        started = time.monotonic()
        run_part(part)
        seconds[part] = time.monotonic() - started
    if parts == PARTS:
        meta = {"date": date.today().isoformat(), "command": "cargo xtask bench", "versions": versions(), "seconds": seconds}
        publish("suite", meta, header(meta))


if __name__ == "__main__":
    main(sys.argv[1:])

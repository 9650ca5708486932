"""Ceilings: what this machine does without the host, measured in the same
run as the host and alternating with it, so every headline row has a ratio
to the machine's limit rather than only to the native router.

- HTTP: nginx (Debian's package, installed if missing) serves one note's
  JSON, the exact bytes the host answers, as a static file. wrk -t2 -c16
  alternates between nginx and GET of a note through the host: the Wasm
  plugin and the native router, in plain mode (`--shards 0`: a flag read and
  one store read) and in migration mode (4 shards, half the notes moved: a
  flag read and up to two store reads).
- Disk: one writer appends 4 KiB and fsyncs (the fsync rate), or appends
  256 KiB and fsyncs (the bandwidth), on the filesystem of the hosts' data
  dirs, alternating with updates and creates at 64 connections over 64
  accounts of 10 notes on a plain-mode host with the default per-account
  cap (the load of the issue's writes goal). Without group commit a host could not acknowledge more
  durable writes per second than the disk does fsyncs; the ratio says how
  far past that the host gets, and the host's commits per second say how
  much of the disk's fsync rate it uses.

Knobs: BENCH_CEILINGS_ROUNDS (3), BENCH_CEILINGS_SECONDS (3)."""

import os
import tempfile
import urllib.request
from datetime import date

from bench_http import populate
from benchlib import (CONNECTIONS, ensure_nginx, ensure_wrk, fsync_probe, load_accounts, mean_runs, start, start_nginx, store_commits, table,
                      write_lua, wrk)

ROUNDS = int(os.environ.get("BENCH_CEILINGS_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_CEILINGS_SECONDS", "3"))
WRITE_CONNECTIONS = 64
WRITE_ACCOUNTS, WRITE_NOTES = 64, 10


def write_ids(workdir, name, lines):
    path = os.path.join(workdir, f"ids-{name}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run():
    ensure_wrk()
    ensure_nginx()
    http_rounds = {name: [] for name in ["nginx", "wasm/plain", "native/plain", "wasm/migration", "native/migration"]}
    disk_rounds = {"fsync_4k": [], "mb_256k": [], "update": [], "create": []}
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        hosts, ids = {}, {}
        try:
            for router in ["wasm", "native"]:
                for mode, shards in [("plain", "0"), ("migration", "4")]:
                    args = ["--shards", shards, "--max-requests-per-account", "1000"]
                    if router == "native":
                        args += ["--router", "native-migrate"]
                    host, base = start(args, workdir, f"{router}-{mode}")
                    hosts[f"{router}/{mode}"] = (host, base)
                    # Migration mode: half of each account's notes moved.
                    lines = populate(base, True if mode == "migration" else None)
                    ids[f"{router}/{mode}"] = write_ids(workdir, f"{router}-{mode}", lines)
            # Writes: their own plain-mode Wasm host, the default cap.
            host, base = start(["--shards", "0"], workdir, "writes")
            hosts["writes"] = (host, base)
            ids["writes"] = write_ids(workdir, "writes", load_accounts(base, WRITE_ACCOUNTS, WRITE_NOTES, False))
            # nginx serves the bytes the host answers for one of its notes.
            _, base = hosts["wasm/plain"]
            account, note = open(ids["wasm/plain"]).readline().split()
            body = urllib.request.urlopen(f"{base}/accounts/{account}/notes/{note}").read()
            nginx, nginx_base = start_nginx(workdir, body)
            nginx_ids = write_ids(workdir, "nginx", ["x note.json"])
            nginx_script = os.path.join(workdir, "nginx.lua")
            with open(nginx_script, "w") as f:
                f.write('request = function() return wrk.format("GET", "/note.json") end\n')
            try:
                for _ in range(ROUNDS):
                    http_rounds["nginx"].append(wrk(nginx_base, "get", nginx_ids, nginx_script, SECONDS))
                    for name, (_, base) in hosts.items():
                        if name in http_rounds:
                            http_rounds[name].append(wrk(base, "get", ids[name], script, SECONDS))
                # Writes at 64 connections, between probes of the disk under
                # the same data dirs.
                _, base = hosts["writes"]
                for _ in range(ROUNDS):
                    fsyncs, _ = fsync_probe(workdir, 4096)
                    _, mb = fsync_probe(workdir, 256 << 10)
                    disk_rounds["fsync_4k"].append(fsyncs)
                    disk_rounds["mb_256k"].append(mb)
                    for scenario in ["update", "create"]:
                        before = store_commits(base)
                        result = wrk(base, scenario, ids["writes"], script, SECONDS, connections=WRITE_CONNECTIONS)
                        after = store_commits(base)
                        result["commits_per_s"] = (after[0] - before[0]) / SECONDS
                        result["writes_per_commit"] = (after[1] - before[1]) / max(1, after[0] - before[0])
                        disk_rounds[scenario].append(result)
            finally:
                nginx.terminate()
                nginx.wait()
        finally:
            for host, _ in hosts.values():
                host.terminate()
                host.wait()

    nginx_rps = mean_runs(http_rounds["nginx"])["rps"]
    http = {}
    for name, runs in http_rounds.items():
        m = mean_runs(runs)
        http[name] = {"rps": round(m["rps"]), "p50_ms": round(m["p50_ms"], 2), "p99_ms": round(m["p99_ms"], 2),
                      "to_ceiling": round(m["rps"] / nginx_rps, 2), "rounds_rps": [round(r["rps"]) for r in runs]}
    fsync_rate = sum(disk_rounds["fsync_4k"]) / len(disk_rounds["fsync_4k"])
    writes = {}
    for scenario in ["update", "create"]:
        m = mean_runs(disk_rounds[scenario])
        writes[scenario] = {"rps": round(m["rps"]), "p99_ms": round(m["p99_ms"], 2),
                            "non_2xx": sum(r["non_2xx"] for r in disk_rounds[scenario]),
                            "commits_per_s": round(m["commits_per_s"]), "writes_per_commit": round(m["writes_per_commit"], 1),
                            "to_fsync_rate": round(m["rps"] / fsync_rate, 2)}
    return {
        "meta": {"date": date.today().isoformat(),
                 "load": f"{ROUNDS} rounds alternating; reads wrk -t2 -c{CONNECTIONS} -d{SECONDS}s over 8 accounts x 50 notes (200 B), "
                         f"writes -c{WRITE_CONNECTIONS} over {WRITE_ACCOUNTS} accounts x {WRITE_NOTES} notes"},
        "disk": {"fsyncs_per_s_4k": round(fsync_rate), "mb_per_s_256k": round(sum(disk_rounds["mb_256k"]) / len(disk_rounds["mb_256k"]), 1),
                 "rounds_fsyncs_per_s": [round(x) for x in disk_rounds["fsync_4k"]]},
        "http": http,
        "writes": writes,
    }


def markdown(results):
    http = results["http"]
    labels = {"nginx": "nginx, static file (the ceiling)", "wasm/plain": "host, Wasm plugin, plain mode",
              "native/plain": "host, native router, plain mode", "wasm/migration": "host, Wasm plugin, migration mode",
              "native/migration": "host, native router, migration mode"}
    rows = [[labels[name], f"{r['rps']:,}", f"{r['p50_ms']:.2f} ms", f"{r['p99_ms']:.2f} ms", f"{r['to_ceiling']:.2f}",
             " / ".join(f"{x:,}" for x in r["rounds_rps"])] for name, r in http.items()]
    disk = results["disk"]
    write_rows = [[f"{scenario} (plain mode, Wasm)", f"{r['rps']:,}", f"{r['p99_ms']:.2f} ms", r["non_2xx"], f"{r['commits_per_s']:,}",
                   r["writes_per_commit"], f"{r['to_fsync_rate']:.2f}"] for scenario, r in results["writes"].items()]
    return (f"Run {results['meta']['date']}: {results['meta']['load']}.\n\n"
            + table(["GET a note", "req/s", "p50", "p99", "to nginx", "rounds req/s"], rows)
            + f"\n\nDisk (data dirs' filesystem, one writer): {disk['fsyncs_per_s_4k']:,} appends of 4 KiB + fsync per second "
              f"(rounds: {' / '.join(f'{x:,}' for x in disk['rounds_fsyncs_per_s'])}); {disk['mb_per_s_256k']} MB/s "
              "in appends of 256 KiB + fsync.\n\n"
            + table(["durable write", "req/s", "p99", "non-2xx", "host fsyncs/s", "writes per fsync", "to the disk's fsync rate"],
                    write_rows))

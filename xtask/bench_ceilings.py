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
  dirs, alternating with updates and creates at 64 connections on a
  plain-mode host. Without group commit a host could not acknowledge more
  durable writes per second than the disk does fsyncs; the ratio says how
  far past that the host gets, and the host's commits per second say how
  much of the disk's fsync rate it uses.

Knobs: BENCH_CEILINGS_ROUNDS (3), BENCH_CEILINGS_SECONDS (3)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date

from benchlib import CONNECTIONS, call, ensure_wrk, load_accounts, start, store_commits, table, write_lua, wrk

ROUNDS = int(os.environ.get("BENCH_CEILINGS_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_CEILINGS_SECONDS", "3"))
WRITE_CONNECTIONS = 64


def ensure_nginx():
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        print("installing nginx (Debian package)", file=sys.stderr)
        subprocess.run("apt-get install -y nginx-light >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y nginx-light >/dev/null)",
                       shell=True, check=True)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(workdir, body):
    """nginx with one worker per core, no access log, serving `body` at
    /note.json; returns (process, base URL)."""
    root = os.path.join(workdir, "nginx")
    os.makedirs(os.path.join(root, "www"), exist_ok=True)
    with open(os.path.join(root, "www", "note.json"), "wb") as f:
        f.write(body)
    # nginx's workers run as `nobody` when started by root: let them in.
    for path in (workdir, root, os.path.join(root, "www")):
        os.chmod(path, 0o755)
    port = free_port()
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes {os.cpu_count()};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root}/www;
    location / {{ default_type application/json; }}
  }}
}}
""")
    proc = subprocess.Popen([ensure_nginx(), "-p", root, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/note.json").read()
            return proc, base
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    sys.exit(f"nginx did not start; see {root}/error.log")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsync_probe(directory, block, seconds=1.5):
    """Appends `block` bytes and fsyncs, repeatedly, for `seconds`; returns
    (fsyncs per second, MB per second)."""
    path = os.path.join(directory, f"fsync-probe-{block}")
    data = os.urandom(block)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    count = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            os.write(fd, data)
            os.fsync(fd)
            count += 1
    finally:
        elapsed = time.monotonic() - started
        os.close(fd)
        os.unlink(path)
    return count / elapsed, count * block / elapsed / 1e6


def write_ids(workdir, name, lines):
    path = os.path.join(workdir, f"ids-{name}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def mean(values):
    return sum(values) / len(values)


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
                    lines = load_accounts(base, 8, 50, False)
                    if mode == "migration":
                        for account in sorted({line.split()[0] for line in lines}):
                            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": True})
                        # Half of each account's notes move to the new store.
                        for line in lines[::2]:
                            account, note = line.split()
                            call(base, "PUT", f"/accounts/{account}/notes/{note}", {"content": "x" * 200})
                    ids[f"{router}/{mode}"] = write_ids(workdir, f"{router}-{mode}", lines)
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
                        http_rounds[name].append(wrk(base, "get", ids[name], script, SECONDS))
                # Writes: the plain-mode Wasm host at 64 connections, between
                # probes of the disk under the same data dirs.
                _, base = hosts["wasm/plain"]
                for _ in range(ROUNDS):
                    fsyncs, _ = fsync_probe(workdir, 4096)
                    _, mb = fsync_probe(workdir, 256 << 10)
                    disk_rounds["fsync_4k"].append(fsyncs)
                    disk_rounds["mb_256k"].append(mb)
                    for scenario in ["update", "create"]:
                        before = store_commits(base)
                        result = wrk(base, scenario, ids["wasm/plain"], script, SECONDS, connections=WRITE_CONNECTIONS)
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

    nginx_rps = mean([r["rps"] for r in http_rounds["nginx"]])
    http = {name: {
        "rps": round(mean([r["rps"] for r in runs])),
        "p50_ms": round(mean([r["p50_ms"] for r in runs]), 2),
        "p99_ms": round(mean([r["p99_ms"] for r in runs]), 2),
        "to_ceiling": round(mean([r["rps"] for r in runs]) / nginx_rps, 2),
        "rounds_rps": [round(r["rps"]) for r in runs],
    } for name, runs in http_rounds.items()}
    fsync_rate = mean(disk_rounds["fsync_4k"])
    writes = {scenario: {
        "rps": round(mean([r["rps"] for r in disk_rounds[scenario]])),
        "p99_ms": round(mean([r["p99_ms"] for r in disk_rounds[scenario]]), 2),
        "non_2xx": sum(r["non_2xx"] for r in disk_rounds[scenario]),
        "commits_per_s": round(mean([r["commits_per_s"] for r in disk_rounds[scenario]])),
        "writes_per_commit": round(mean([r["writes_per_commit"] for r in disk_rounds[scenario]]), 1),
        "to_fsync_rate": round(mean([r["rps"] for r in disk_rounds[scenario]]) / fsync_rate, 2),
    } for scenario in ["update", "create"]}
    return {
        "meta": {"date": date.today().isoformat(),
                 "load": f"{ROUNDS} rounds alternating; reads wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, writes -c{WRITE_CONNECTIONS}; "
                         "8 accounts x 50 notes (200 B)"},
        "disk": {"fsyncs_per_s_4k": round(fsync_rate), "mb_per_s_256k": round(mean(disk_rounds["mb_256k"]), 1),
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

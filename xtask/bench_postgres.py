#!/usr/bin/env python3
"""PostgreSQL against SQLite, in one run (`cargo xtask bench postgres`).

Starts a throwaway PostgreSQL server (Debian's binaries, a temp dir, a
loopback port; fsync on, as SQLite's synchronous=FULL), then:

1. **Requests.** Three hosts with the Wasm plugin and 4 new-store shards:
   one on a SQLite data dir, and two on PostgreSQL (a coordination
   database, the legacy store and 4 shards): with each store in a database
   of its own, and with the stores as schemas of one database
   (`?schema=NAME`), whose reads then share connections. Same data,
   mid-migration (half of each account's notes moved); wrk alternates
   between them, ROUNDS times, per scenario.
2. **Flip propagation** across 3 PostgreSQL hosts with data dirs of their
   own (`notes-host sim --own-data-dirs`): a flip returns once it is in force
   on every host, so its duration is the propagation time. Flips alone, and
   under 4 strict clients.
3. **The fencing check**, in isolation: pgbench runs the store's `put`
   statement with and without its fencing condition against one store
   database (1,000 fenced accounts), alternating, ROUNDS times.

Publishes to BENCHMARKS.md and docs/bench-results.json (section "postgres").
Environment: BENCH_SECONDS (per run, default 3), BENCH_ROUNDS (default 2).
"""

import glob
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import date

from bench_http import ACCOUNTS, NOTES, populate
from benchlib import HOST, ensure_wrk, mean_runs, publish, start, table, wrk, write_lua

SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
SCENARIOS = ["get", "list", "update", "mix"]
SHARDS = 4


def bin_dir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not dirs:
        subprocess.run("apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 || "
                       "(apt-get update >/dev/null && apt-get install -y --no-install-recommends postgresql >/dev/null)",
                       shell=True, check=True)
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(dirs[-1])


class Server:
    """A throwaway PostgreSQL server (as tests/src/postgres.rs starts them)."""

    def __init__(self, workdir):
        self.bin = bin_dir()
        self.dir = os.path.join(workdir, "pg")
        os.makedirs(self.dir)
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(workdir, "postgres")
            shutil.chown(self.dir, "postgres")
        self.server(["initdb", "-D", f"{self.dir}/data", "-U", "notes", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-instructions"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.dir}' "
                   "-c max_connections=300 -c shared_buffers=128MB")
        self.server(["pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-o", options, "-w", "start"])

    def server(self, args):
        cmd = [os.path.join(self.bin, args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def database(self, name):
        subprocess.run([os.path.join(self.bin, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "notes", name], check=True)
        return f"postgres://notes@127.0.0.1:{self.port}/{name}"

    def stop(self):
        self.server(["pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop"])


def service(server, name, layout="databases"):
    """serve arguments for a new service on `server`: each store in a
    database of its own, or (`layout="schemas"`) the stores as schemas of
    one database."""
    if layout == "schemas":
        stores = server.database(f"{name}_stores")
        names = ["legacy"] + [f"shard{i}" for i in range(SHARDS)]
        subprocess.run([os.path.join(server.bin, "psql"), stores, "-qc", "".join(f"CREATE SCHEMA {n};" for n in names)], check=True)
        args = ["--coordination", server.database(f"{name}_coordination"), "--legacy-store", f"{stores}?schema=legacy"]
        return args + [a for i in range(SHARDS) for a in ["--new-store", f"{stores}?schema=shard{i}"]]
    args = ["--coordination", server.database(f"{name}_coordination"), "--legacy-store", server.database(f"{name}_legacy")]
    for i in range(SHARDS):
        args += ["--new-store", server.database(f"{name}_shard{i}")]
    return args


LAYOUTS = {"postgres": "databases", "postgres_schemas": "schemas"}


def requests(server, workdir):
    script = write_lua(workdir)
    hosts = [("sqlite", *start(["--shards", str(SHARDS)], workdir, "sqlite"))]
    for name, layout in LAYOUTS.items():
        hosts.append((name, *start(service(server, f"requests_{layout}", layout), workdir, name)))
    try:
        ids = {}
        for name, _, base in hosts:
            path = os.path.join(workdir, f"{name}.ids")
            open(path, "w").write("\n".join(populate(base, True)) + "\n")
            ids[name] = path
        rows = []
        for scenario in SCENARIOS:
            runs = {name: [] for name, _, _ in hosts}
            for n in range(ROUNDS):
                # The order alternates, so no host always runs first.
                for name, _, base in (hosts if n % 2 == 0 else hosts[::-1]):
                    runs[name].append(wrk(base, scenario, ids[name], script, SECONDS))
            row = {"scenario": scenario, **{name: mean_runs(rs) for name, rs in runs.items()}}
            row["throughput_ratio"] = round(row["postgres"]["rps"] / row["sqlite"]["rps"], 3)
            row["schemas_ratio"] = round(row["postgres_schemas"]["rps"] / row["sqlite"]["rps"], 3)
            rows.append(row)
            print(f"{scenario:7} sqlite {row['sqlite']['rps']:8.0f} req/s  postgres {row['postgres']['rps']:8.0f} "
                  f"(ratio {row['throughput_ratio']:.2f})  schemas {row['postgres_schemas']['rps']:8.0f} "
                  f"(ratio {row['schemas_ratio']:.2f})", file=sys.stderr)
        return rows
    finally:
        for _, proc, _ in hosts:
            proc.terminate()


def propagation(server, workdir):
    rows = []
    for name, args in [("flips only", ["--idle", "--accounts", "8", "--flip-every-ms", "20"]),
                       ("4 clients", ["--accounts", "4", "--flip-every-ms", "50"])]:
        host_args = [f"--host-arg={a}" for a in service(server, f"flips{len(rows)}")]
        out = pathlib.Path(workdir) / f"flips{len(rows)}.json"
        data = pathlib.Path(workdir) / f"flips{len(rows)}"
        cmd = [HOST, "sim", "--hosts", "3", "--own-data-dirs", "--data-dir", str(data), "--seconds", str(SECONDS * 3),
               "--seed", "1", "--json", str(out), *args, *host_args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        report = json.loads(out.read_text())
        report["run"] = name
        rows.append(report)
        print(f"{name}: flip p50 {report['flipMsP50']:.2f} ms p99 {report['flipMsP99']:.2f} ms", file=sys.stderr)
    return rows


FENCED_PUT = ("INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted) "
              "SELECT 'a' || (:n % 8), :n::text, 'x', 0, 0, 1, false "
              "WHERE NOT EXISTS (SELECT 1 FROM fences WHERE account_id = 'a' || (:n % 8) AND epoch > 0) "
              "ON CONFLICT (account_id, id) DO UPDATE SET updated_at_ms = notes.updated_at_ms + 1;")
PLAIN_PUT = ("INSERT INTO notes (account_id, id, content, created_at_ms, updated_at_ms, version, deleted) "
             "VALUES ('a' || (:n % 8), :n::text, 'x', 0, 0, 1, false) "
             "ON CONFLICT (account_id, id) DO UPDATE SET updated_at_ms = notes.updated_at_ms + 1;")


def fencing(server, workdir):
    # A host opened on the database makes the schema (the table, the fence function).
    proc, _ = start(service(server, "fence"), workdir, "fence")
    proc.terminate()
    proc.wait()
    url = f"postgres://notes@127.0.0.1:{server.port}/fence_legacy"
    psql = os.path.join(server.bin, "psql")
    subprocess.run([psql, url, "-qc", "INSERT INTO fences SELECT 'fenced-' || g, 1 FROM generate_series(1, 1000) g"], check=True)
    runs = {"with the check": [], "without": []}
    for _ in range(ROUNDS):
        for name, sql in [("with the check", FENCED_PUT), ("without", PLAIN_PUT)]:
            script = os.path.join(workdir, "put.sql")
            open(script, "w").write("\\set n random(1, 10000)\n" + sql + "\n")
            out = subprocess.run([os.path.join(server.bin, "pgbench"), "-n", "-M", "prepared", "-c", "4", "-j", "2", "-T", str(SECONDS),
                                  "-f", script, url], capture_output=True, text=True, check=True).stdout
            tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
            latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
            runs[name].append({"tps": tps, "latency_ms": latency})
    result = {name: mean_runs(rs) for name, rs in runs.items()}
    result["tps_ratio"] = round(result["with the check"]["tps"] / result["without"]["tps"], 3)
    print(f"fencing: {result}", file=sys.stderr)
    return result


def run():
    ensure_wrk()
    workdir = tempfile.mkdtemp(prefix="bench-postgres-")
    server = Server(workdir)
    try:
        results = {"requests": requests(server, workdir), "propagation": propagation(server, workdir), "fencing": fencing(server, workdir)}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"] = {
        "date": date.today().isoformat(),
        "command": "cargo xtask bench postgres",
        "wrk": f"-t2 -c16 -d{SECONDS}s, {ROUNDS} rounds alternating SQLite and the two PostgreSQL layouts",
        "data": f"{ACCOUNTS} accounts x {NOTES} notes (200 B), half moved to the new store; {SHARDS} shards; fsync on both",
    }
    return results


def markdown(results):
    requests = table(
        ["scenario", "SQLite req/s", "PostgreSQL req/s (a database a store)", "ratio", "PostgreSQL req/s (schemas of one database)",
         "ratio", "SQLite p50", "PostgreSQL p50 (databases / schemas)", "SQLite p99", "PostgreSQL p99 (databases / schemas)"],
        [[r["scenario"], f"{r['sqlite']['rps']:,.0f}", f"{r['postgres']['rps']:,.0f}", f"{r['throughput_ratio']:.2f}",
          f"{r['postgres_schemas']['rps']:,.0f}", f"{r['schemas_ratio']:.2f}",
          f"{r['sqlite']['p50_ms']:.2f} ms", f"{r['postgres']['p50_ms']:.2f} / {r['postgres_schemas']['p50_ms']:.2f} ms",
          f"{r['sqlite']['p99_ms']:.2f} ms", f"{r['postgres']['p99_ms']:.2f} / {r['postgres_schemas']['p99_ms']:.2f} ms"]
         for r in results["requests"]],
    )
    flips = table(
        ["load (3 PostgreSQL hosts, own data dirs)", "flips", "flip p50", "flip p99", "flip max", "anomalies"],
        [[r["run"], f"{r['flipsOk']} ok, {r['flipsFailed']} failed", f"{r['flipMsP50']:.2f} ms", f"{r['flipMsP99']:.2f} ms",
          f"{r['flipMsMax']:.2f} ms", sum(r["anomalies"].values())] for r in results["propagation"]],
    )
    f = results["fencing"]
    fencing = table(
        ["put statement (pgbench, 4 clients)", "tps", "latency"],
        [[name, f"{f[name]['tps']:,.0f}", f"{f[name]['latency_ms']:.3f} ms"] for name in ["with the check", "without"]],
    )
    meta = results["meta"]
    return (f"Run {meta['date']}: wrk {meta['wrk']}; {meta['data']}.\n\n{requests}\n\nFlip propagation (a flip returns once "
            f"in force on every host):\n\n{flips}\n\nThe fencing check (`NOT EXISTS` a higher fence, 1,000 fenced accounts), "
            f"throughput ratio {f['tps_ratio']:.2f}:\n\n{fencing}")


if __name__ == "__main__":
    results = run()
    publish("postgres", results, markdown(results))

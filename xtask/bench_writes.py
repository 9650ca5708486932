"""Writes: updates and creates at 64 connections in each mode, with the
writes each fsync held (group commit, `notes_store_committed_writes_total`
over `notes_store_commits_total` from the host's /metrics).

One host per mode (plain: `--shards 0`; migration and rollback: 4 shards,
flag on or off), 8 accounts x 50 notes, the per-account cap lifted so that
64 connections over 8 accounts never meet a 429. Every answer is counted
only once its write was fsynced (`synchronous = FULL`).

Knobs: BENCH_WRITES_SECONDS (5), BENCH_WRITES_CONNECTIONS (64)."""

import os
import tempfile
from datetime import date

from benchlib import call, ensure_wrk, load_accounts, start, store_commits, table, write_lua, wrk

SECONDS = int(os.environ.get("BENCH_WRITES_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_WRITES_CONNECTIONS", "64"))
MODES = [("plain", "0", None), ("migration", "4", True), ("rollback", "4", False)]


def run():
    ensure_wrk()
    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        for mode, shards, migrating in MODES:
            proc, base = start(["--shards", shards, "--max-requests-per-account", "1000"], workdir, f"writes-{mode}")
            try:
                lines = load_accounts(base, 8, 50, False)
                if migrating is not None:
                    for account in sorted({line.split()[0] for line in lines}):
                        call(base, "PATCH", f"/accounts/{account}", {"isMigrating": True})
                        if not migrating:
                            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": False})
                ids = os.path.join(workdir, f"ids-{mode}")
                with open(ids, "w") as f:
                    f.write("\n".join(lines) + "\n")
                for scenario in ["update", "create"]:
                    before = store_commits(base)
                    result = wrk(base, scenario, ids, script, SECONDS, connections=CONNECTIONS)
                    after = store_commits(base)
                    commits, writes = after[0] - before[0], after[1] - before[1]
                    result["writes_per_commit"] = round(writes / commits, 1) if commits else None
                    rows[f"{scenario}/{mode}"] = result
            finally:
                proc.terminate()
                proc.wait()
    return {
        "meta": {"date": date.today().isoformat(), "load": f"wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, 8 accounts x 50 notes, Wasm plugin"},
        "rows": rows,
    }


def markdown(results):
    rows = [[key.split("/")[0], key.split("/")[1], f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f} ms", f"{r['p99_ms']:.2f} ms",
             r["non_2xx"], r["writes_per_commit"]] for key, r in results["rows"].items()]
    return (f"Run {results['meta']['date']}: {results['meta']['load']}.\n\n"
            + table(["scenario", "mode", "req/s", "p50", "p99", "non-2xx", "writes per fsync"], rows))

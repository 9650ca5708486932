"""Stores: a GET served from a store plugin against the built-in SQLite
store, and a backfill's notes/s out of the Notely data proxy stand-in, each
against its upstream measured alone, outside the host.

Three hosts (`--shards 4`, the flag off, so GETs read the legacy store),
each loaded with ACCOUNTS x NOTES notes of 200 B through the API:
- `legacy.db`, the built-in SQLite store;
- `plugins/examples/consul-kv` over the key-value stand-in (`kv-standin`),
  a store that keeps its own versions;
- `plugins/examples/notely-data-proxy` over the Notely data proxy stand-in
  (`notely-proxy-standin`, one lock, 1-5 ms per call), versions kept by the host.
wrk -t2 -cCONNECTIONS GETs random notes for SECONDS s on each. The upstream
alone: wrk with the same connections for SECONDS s, one read per request
(GetNote; a GET of one note's key), the most any host could get from it.
Then the flag goes on and one backfill moves every note out of the legacy
store (no rate cap): notes/s from `GET /jobs/{id}`.

Knobs: BENCH_STORES_ACCOUNTS (16), BENCH_STORES_NOTES (25), BENCH_STORES_SECONDS (5)."""

import json
import re
import os
import subprocess
import tempfile
import time
import urllib.parse
from datetime import date

from benchlib import CONNECTIONS, TARGET, ROOT, call, ensure_wrk, load_accounts, start, table, write_lua, wrk

ACCOUNTS = int(os.environ.get("BENCH_STORES_ACCOUNTS", "16"))
NOTES = int(os.environ.get("BENCH_STORES_NOTES", "25"))
SECONDS = int(os.environ.get("BENCH_STORES_SECONDS", "5"))
PLUGINS = os.path.join(TARGET, "plugins", "examples")


def standin(binary, workdir):
    """Starts a stand-in of `tests/src/bin/`; (process, url)."""
    path = os.path.join(TARGET, "release", binary)
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "--release", "-p", "notes-scenarios", "--bin", binary], cwd=ROOT, check=True)
    proc = subprocess.Popen([path, "--db", os.path.join(workdir, binary + ".db")], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, url


def upstream_reads_per_s(url, path, workdir, method="GET", body=None):
    """wrk -t2 -cCONNECTIONS on the upstream alone for SECONDS s, one read
    per request: what any host could get from it."""
    script = os.path.join(workdir, "upstream.lua")
    with open(script, "w") as f:
        f.write(f"wrk.method = {json.dumps(method)}\n")
        if body is not None:
            f.write(f"wrk.body = {json.dumps(body)}\nwrk.headers['Content-Type'] = 'application/json'\n")
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", script, url.rstrip("/") + path],
                         capture_output=True, text=True, check=True).stdout
    return round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))


def measure(name, args, workdir, script):
    proc, base = start(["--shards", "4", *args], workdir, f"stores-{name}")
    try:
        lines = load_accounts(base, ACCOUNTS, NOTES, False)
        ids = os.path.join(workdir, f"{name}.ids")
        with open(ids, "w") as f:
            f.write("\n".join(lines) + "\n")
        get = wrk(base, "get", ids, script, SECONDS)
        for account in {line.split()[0] for line in lines}:
            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": True})
        started = time.monotonic()
        job = call(base, "POST", "/jobs", {"kind": "backfill"})
        while call(base, "GET", f"/jobs/{job['id']}")["state"] == "running":
            time.sleep(0.05)
        took = time.monotonic() - started
        done = call(base, "GET", f"/jobs/{job['id']}")
        assert done["state"] == "done" and done["moved"] == len(lines), done
        return {"get": get, "backfill": {"notes": done["moved"], "seconds": round(took, 2), "notes_per_s": round(done["moved"] / took)}}
    finally:
        proc.terminate()
        proc.wait()


def run():
    ensure_wrk()
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        rows = {"sqlite": measure("sqlite", [], workdir, script)}
        kv, kv_url = standin("kv-standin", workdir)
        try:
            plugin = os.path.join(PLUGINS, "consul-kv.wasm")
            rows["consul-kv"] = measure("consul-kv", [f"--legacy-store=plugin:{plugin}", f"--store-config=url={kv_url}",
                                                      f"--store-allow-http={kv_url.rstrip('/')}"], workdir, script)
            # A note's key, as the plugin reads it (a GET of one key).
            key = json.loads(subprocess.run(["curl", "-s", kv_url + "v1/kv/notes/?recurse"], capture_output=True, text=True).stdout)[0]["Key"]
            rows["consul-kv"]["upstream_reads_per_s"] = upstream_reads_per_s(kv_url, "/v1/kv/" + urllib.parse.quote(key), workdir)
        finally:
            kv.terminate()
        proxy, proxy_url = standin("notely-proxy-standin", workdir)
        try:
            plugin = os.path.join(PLUGINS, "notely-data-proxy.wasm")
            rows["notely"] = measure("notely", [f"--legacy-store=plugin:{plugin}", f"--store-config=url={proxy_url}",
                                                f"--store-allow-http={proxy_url.rstrip('/')}"], workdir, script)
            get_note = json.dumps({"method": "GetNote", "id": 1, "params": {"accountDetails": {"accountId": "bench", "isMigrating": False}, "noteId": "n"}})
            rows["notely"]["upstream_reads_per_s"] = upstream_reads_per_s(proxy_url, "/", workdir, "POST", get_note)
        finally:
            proxy.terminate()
    return {
        "meta": {
            "date": date.today().isoformat(),
            "load": f"{ACCOUNTS} accounts x {NOTES} notes of 200 B in the legacy store, flag off; wrk -t2 -c{CONNECTIONS} GET of a random note "
                    f"for {SECONDS} s; then the flag on and one backfill of every account (no rate cap)",
        },
        "rows": rows,
    }


def markdown(results):
    rows = []
    labels = [("sqlite", "built-in SQLite (`legacy.db`)"), ("consul-kv", "consul-kv plugin over the KV stand-in"),
              ("notely", "notely-data-proxy plugin over the Notely stand-in")]
    sqlite_rps = results["rows"]["sqlite"]["get"]["rps"]
    for key, label in labels:
        r = results["rows"][key]
        upstream = r.get("upstream_reads_per_s")
        rows.append([label, f"{r['get']['rps']:,.0f}", f"{r['get']['rps'] / sqlite_rps:.3f}",
                     f"{r['get']['p50_ms']:.2f} / {r['get']['p99_ms']:.2f} ms", r["get"]["non_2xx"],
                     f"{upstream:,}" if upstream else "-", f"{r['get']['rps'] / upstream:.2f}" if upstream else "-",
                     f"{r['backfill']['notes_per_s']:,}"])
    return (f"Run {results['meta']['date']}: {results['meta']['load']}.\n\n"
            + table(["legacy store", "GET req/s", "vs SQLite", "p50 / p99", "non-2xx", "upstream alone, reads/s",
                     "GET vs upstream alone", "backfill notes/s"], rows))

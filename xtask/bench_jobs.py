"""Jobs: how fast a backfill moves an account's notes to the new store with
the Wasm plugin, what it costs the account's own requests meanwhile, and the
same with the native router (the plugin boundary's share).

One host per router, and two backfills on each, of an account with NOTES
notes in legacy and the flag on (one job, no rate cap): one alone, the
backfill's own throughput; one while READERS client threads read the
account's notes and time each read (a baseline of the same reads runs
before the job), what it costs the account's clients and what they cost it
on 2 cores. Throughput is the job's notes over its wall time (from
`GET /jobs/{id}`, polled every 50 ms).

Knobs: BENCH_JOBS_NOTES (50000), BENCH_JOBS_READERS (4)."""

import http.client
import os
import statistics
import tempfile
import threading
import time
import urllib.parse
from datetime import date

from benchlib import call, load_notes, start, table

NOTES = int(os.environ.get("BENCH_JOBS_NOTES", "50000"))
READERS = int(os.environ.get("BENCH_JOBS_READERS", "4"))


def read_loop(base, lines, stop, took):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    i = 0
    while not stop.is_set():
        account, note = lines[i % len(lines)].split()
        i += 7919
        started = time.monotonic()
        conn.request("GET", f"/accounts/{account}/notes/{note}")
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            took.append((time.monotonic() - started) * 1000)


def reads_for(base, lines, seconds):
    stop, took = threading.Event(), []
    threads = [threading.Thread(target=read_loop, args=(base, lines, stop, took), daemon=True) for _ in range(READERS)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return took


def p99(values):
    values = sorted(values)
    return round(values[max(0, int(len(values) * 0.99) - 1)], 2) if values else None


def backfill(base, readers):
    """One account of NOTES notes backfilled with `readers` reading it; its
    throughput, and the reads' latency before and during."""
    account = call(base, "POST", "/accounts", {"name": "bench"})["id"]
    lines = load_notes(base, account, NOTES)
    call(base, "PATCH", f"/accounts/{account}", {"isMigrating": True})
    baseline = reads_for(base, lines, 2) if readers else []
    stop, during = threading.Event(), []
    threads = [threading.Thread(target=read_loop, args=(base, lines, stop, during), daemon=True) for _ in range(readers)]
    started = time.monotonic()
    job = call(base, "POST", "/jobs", {"kind": "backfill", "account": account})
    for t in threads:
        t.start()
    while call(base, "GET", f"/jobs/{job['id']}")["state"] == "running":
        time.sleep(0.05)
    took = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join()
    done = call(base, "GET", f"/jobs/{job['id']}")
    status = call(base, "GET", f"/accounts/{account}/migration")
    assert done["state"] == "done" and status["legacyNotes"] == 0, (done, status)
    row = {"notes": done["moved"], "seconds": round(took, 2), "notes_per_s": round(done["moved"] / took)}
    if readers:
        row.update({
            "reads_p50_ms_before": round(statistics.median(baseline), 2),
            "reads_p99_ms_before": p99(baseline),
            "reads_p50_ms_during": round(statistics.median(during), 2) if during else None,
            "reads_p99_ms_during": p99(during),
        })
    return row


def measure(router, workdir):
    proc, base = start(["--router", router, "--shards", "4"], workdir, f"jobs-{router}")
    try:
        return {"alone": backfill(base, 0), "with_readers": backfill(base, READERS)}
    finally:
        proc.terminate()
        proc.wait()


def run():
    with tempfile.TemporaryDirectory() as workdir:
        rows = {router: measure(router, workdir) for router in ("plugin", "native-migrate")}
    return {
        "meta": {
            "date": date.today().isoformat(),
            "load": f"one account, {NOTES} notes of 200 B in legacy, flag on, one backfill job (no rate cap); "
                    f"alone, then (another account) with {READERS} client threads reading the account's notes before and during it",
        },
        "rows": rows,
    }


def markdown(results):
    rows = []
    for router, label in [("plugin", "migrate plugin (Wasm)"), ("native-migrate", "native router")]:
        alone, busy = results["rows"][router]["alone"], results["rows"][router]["with_readers"]
        rows.append([label, f"{alone['notes']:,}", f"{alone['notes_per_s']:,}", f"{busy['notes_per_s']:,}",
                     f"{busy['reads_p50_ms_before']} / {busy['reads_p99_ms_before']} ms", f"{busy['reads_p50_ms_during']} / {busy['reads_p99_ms_during']} ms"])
    wasm, native = results["rows"]["plugin"], results["rows"]["native-migrate"]
    ratio = wasm["alone"]["notes_per_s"] / native["alone"]["notes_per_s"]
    return (f"Run {results['meta']['date']}: {results['meta']['load']}.\n\n"
            + table(["router", "notes moved", "notes/s alone", f"notes/s with {READERS} readers", "account's reads p50 / p99 before", "… during the backfill"], rows)
            + f"\n\nWasm/native backfill throughput alone in this run: {ratio:.2f}.")

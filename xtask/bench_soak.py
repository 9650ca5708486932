"""Soak: millions of mixed requests, with flips and jobs, and nothing
scraping /metrics. Does the host's memory stay flat?

One host on a SQLite data dir (4 new-store shards, the migrate plugin).
64 accounts of 50 notes; wrk runs BENCH_SOAK_SCENARIO for BENCH_SOAK_SECONDS
from 16 connections: `steady` (65% get, 22% list, 13% update: the data keeps
its size, so any growth is the host's), or `mix` (Notely's, with 8% creates:
the lists grow all run long, and so do the buffers that answer them), while a
thread flips a random account every 200 ms and starts a backfill or a bulk
rollback of every account every 20 s. Nothing reads /metrics until the end.
RSS, open fds and threads are read every BENCH_SOAK_SAMPLE seconds.

The goal (issue "A host that runs for weeks"): after warm-up, RSS within 10%
of its level at 10% of the run. Reported: the curve, RSS at 10% and at the
end, their ratio, and the bytes per request between them (a host before the
metrics upkeep kept ~75 bytes per request for good).

Knobs: BENCH_SOAK_SECONDS (300), BENCH_SOAK_SAMPLE (5), BENCH_SOAK_SCENARIO (steady)."""

import os
import random
import re
import subprocess
import tempfile
import threading
import time
import urllib.request
from datetime import date

from benchlib import CONNECTIONS, call, ensure_wrk, load_accounts, start, table, write_lua

SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "300"))
SAMPLE = int(os.environ.get("BENCH_SOAK_SAMPLE", "5"))
SCENARIO = os.environ.get("BENCH_SOAK_SCENARIO", "steady")
MIXES = {"steady": "65% get, 22% list, 13% update: the data keeps its size", "mix": "60% get, 20% list, 12% update, 8% create"}
ACCOUNTS = 64
NOTES = 50


def proc(pid):
    """(RSS MiB, open fds, threads) of a process."""
    status = open(f"/proc/{pid}/status").read()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return round(rss, 1), len(os.listdir(f"/proc/{pid}/fd")), threads


def operator(base, accounts, stop, counts):
    """Flips a random account every 200 ms; a backfill or a bulk rollback
    of every account every 20 s."""
    rng = random.Random(7)
    next_job, kinds = time.monotonic() + 20, ["backfill", "rollback"]
    while not stop.is_set():
        account = rng.choice(accounts)
        try:
            call(base, "PATCH", f"/accounts/{account}", {"isMigrating": rng.random() < 0.5})
            counts["flips"] += 1
        except Exception:
            counts["flip_errors"] += 1
        if time.monotonic() >= next_job:
            try:
                call(base, "POST", "/jobs", {"kind": kinds[counts["jobs"] % 2]})
                counts["jobs"] += 1
            except Exception:
                counts["job_errors"] += 1
            next_job += 20
        stop.wait(0.2)


def run():
    ensure_wrk()
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        host, base = start(["--shards", "4", "--max-requests-per-account", "1000"], workdir, "soak")
        try:
            lines = load_accounts(base, ACCOUNTS, NOTES, False)
            ids = os.path.join(workdir, "ids")
            with open(ids, "w") as f:
                f.write("\n".join(lines) + "\n")
            accounts = sorted({line.split()[0] for line in lines})
            time.sleep(2)
            samples = [(0, *proc(host.pid))]
            stop, counts = threading.Event(), {"flips": 0, "flip_errors": 0, "jobs": 0, "job_errors": 0}
            flipper = threading.Thread(target=operator, args=(base, accounts, stop, counts), daemon=True)
            load = subprocess_wrk(base, ids, script)
            started = time.monotonic()
            flipper.start()
            while load.poll() is None:
                time.sleep(SAMPLE)
                samples.append((round(time.monotonic() - started), *proc(host.pid)))
            stop.set()
            flipper.join()
            out = load.stdout.read()
            requests = int(re.search(r"(\d+) requests in", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            scraped = urllib.request.urlopen(base + "/metrics").read()  # only now
        finally:
            host.terminate()
            host.wait()
    at_tenth = min(samples, key=lambda s: abs(s[0] - SECONDS / 10))
    end = samples[-1]
    served_between = requests * (end[0] - at_tenth[0]) / max(end[0], 1)
    return {
        "meta": {"date": date.today().isoformat(),
                 "load": f"{ACCOUNTS} accounts x {NOTES} notes, 4 shards, Wasm plugin; wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, "
                         f"{SCENARIO} ({MIXES[SCENARIO]}); a flip every 200 ms, a backfill or bulk "
                         "rollback of every account every 20 s; /metrics not read until the end"},
        "requests": requests,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "rps": round(requests / SECONDS),
        "operator": counts,
        "samples": [{"s": s, "rss_mib": r, "fds": f, "threads": t} for s, r, f, t in samples],
        "rss_at_tenth_mib": at_tenth[1],
        "rss_end_mib": end[1],
        "ratio": round(end[1] / at_tenth[1], 3),
        "bytes_per_request": round((end[1] - at_tenth[1]) * 1024 * 1024 / max(served_between, 1), 2),
        "metrics_bytes": len(scraped),
    }


def subprocess_wrk(base, ids, script):
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "10s", "-s", script, base, "--", ids],
        env=dict(os.environ, SCENARIO=SCENARIO), stdout=subprocess.PIPE, text=True,
    )


def markdown(r):
    points = r["samples"]
    step = max(1, len(points) // 12)
    shown = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    curve = table(["second", "RSS", "open fds", "threads"], [[p["s"], f"{p['rss_mib']} MiB", p["fds"], p["threads"]] for p in shown])
    op = r["operator"]
    return (f"Run {r['meta']['date']}: {r['meta']['load']}.\n\n"
            f"{r['requests']:,} requests ({r['rps']:,}/s, {r['non_2xx']:,} non-2xx), {op['flips']:,} flips ({op['flip_errors']} refused or failed), "
            f"{op['jobs']} jobs. RSS at 10% of the run **{r['rss_at_tenth_mib']} MiB**, at the end **{r['rss_end_mib']} MiB** "
            f"(**{r['ratio']:.2f}×**; goal ≤ 1.10), {r['bytes_per_request']} bytes per request between them "
            f"(the host before the metrics upkeep: ~75). The first scrape, at the end, was {r['metrics_bytes']:,} bytes.\n\n" + curve)

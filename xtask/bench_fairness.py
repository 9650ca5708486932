"""Fairness: one account's plugin calls loop; do the other accounts keep
their throughput?

The faulty plugin loops forever on a create whose content is `fault:loop`
(the host stops it at its deadline, 503). LOOPERS client threads send such
creates for one account, again and again; a 429 is retried after its
Retry-After, as a client would. Meanwhile wrk reads notes of the other
accounts. The goal (BENCHMARKS.md): other accounts keep >= 50% of the
throughput they have when nobody loops. The same run with the per-account
cap lifted shows what the cap buys.

Knobs: BENCH_FAIRNESS_SECONDS (5), BENCH_FAIRNESS_LOOPERS (128)."""

import http.client
import os
import statistics
import tempfile
import threading
import time
import urllib.parse
from datetime import date

from benchlib import CONNECTIONS, TARGET, call, ensure_wrk, load_accounts, rss_mib, start, table, write_lua, wrk

SECONDS = int(os.environ.get("BENCH_FAIRNESS_SECONDS", "5"))
LOOPERS = int(os.environ.get("BENCH_FAIRNESS_LOOPERS", "128"))
ACCOUNTS, NOTES = 50, 20
DEADLINE_MS = 1000
FAULTY = os.path.join(TARGET, "plugins", "testing", "faulty.wasm")


def loop_forever(base, account, stop, outcomes):
    """One hostile client: creates looping notes until `stop`."""
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn.request("POST", f"/accounts/{account}/notes", body=b'{"content":"fault:loop"}')
            r = conn.getresponse()
            r.read()
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            continue
        took = time.monotonic() - started
        outcomes.append((r.status, took))
        if r.status == 429:
            stop.wait(float(r.getheader("retry-after", "1")))
    conn.close()


def measure(cap, workdir, script):
    name = "capped" if cap else "uncapped"
    # The breaker off: a host that rolls back or suspends the looping plugin
    # would measure the breaker, not the cap.
    args = ["--plugin", FAULTY, "--probation-requests", "0", "--breaker-requests", "100000000",
            "--plugin-deadline-ms", str(DEADLINE_MS)]
    if not cap:
        args += ["--max-requests-per-account", "1000000"]
    proc, base = start(args, workdir, name)
    try:
        lines = load_accounts(base, ACCOUNTS, NOTES, False)
        ids = os.path.join(workdir, f"{name}.ids")
        with open(ids, "w") as f:
            f.write("\n".join(lines) + "\n")
        alone = wrk(base, "get", ids, script, SECONDS)
        looping = call(base, "POST", "/accounts", {"name": "loops"})["id"]
        stop, outcomes = threading.Event(), []
        threads = [threading.Thread(target=loop_forever, args=(base, looping, stop, outcomes), daemon=True) for _ in range(LOOPERS)]
        for t in threads:
            t.start()
        time.sleep(1.5)  # the loops are running
        beside = wrk(base, "get", ids, script, SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=DEADLINE_MS / 1000 + 10)
        stopped = sorted(took * 1000 for status, took in outcomes if status == 503)
        return {
            "alone_rps": alone["rps"],
            "beside_loops_rps": beside["rps"],
            "share_kept": round(beside["rps"] / alone["rps"], 3),
            "beside_loops_p99_ms": beside["p99_ms"],
            "beside_loops_non_2xx": beside["non_2xx"],
            "loops_stopped": len(stopped),
            "loops_refused_429": sum(1 for status, _ in outcomes if status == 429),
            "deadline_p50_ms": round(statistics.median(stopped), 1) if stopped else None,
            "deadline_p99_ms": round(stopped[int(len(stopped) * 0.99) - 1], 1) if stopped else None,
            "rss_peak_mib": rss_mib(proc.pid, "VmHWM"),
        }
    finally:
        proc.terminate()
        proc.wait()


def run():
    ensure_wrk()
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        rows = {"capped": measure(True, workdir, script), "uncapped": measure(False, workdir, script)}
    return {
        "meta": {
            "date": date.today().isoformat(),
            "load": f"wrk -t2 -c{CONNECTIONS} -d{SECONDS}s GET of {ACCOUNTS} accounts x {NOTES} notes; {LOOPERS} client threads "
                    f"looping creates on one other account (deadline {DEADLINE_MS} ms; 429 retried after Retry-After)",
        },
        "rows": rows,
    }


def markdown(results):
    rows = []
    for name, label in [("capped", "default (`--max-requests-per-account 8`)"), ("uncapped", "cap lifted")]:
        r = results["rows"][name]
        rows.append([label, f"{r['alone_rps']:,.0f}", f"{r['beside_loops_rps']:,.0f}", f"{r['share_kept'] * 100:.0f}%",
                     f"{r['beside_loops_p99_ms']:.1f} ms", r["beside_loops_non_2xx"], r["loops_stopped"], r["loops_refused_429"],
                     f"{r['deadline_p50_ms']} / {r['deadline_p99_ms']} ms", f"{r['rss_peak_mib']} MiB"])
    return (f"Run {results['meta']['date']}: {results['meta']['load']}.\n\n"
            + table(["host", "other accounts alone (req/s)", "beside the loops (req/s)", "kept", "p99 beside the loops",
                     "non-2xx beside the loops", "loops stopped (503)", "loops refused (429)", "loop answered after p50 / p99", "RSS peak"], rows))

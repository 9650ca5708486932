"""Memory after a burst: does a host give back what a burst of big lists
took?

One account of 100k notes on a plain-mode host (Wasm plugin, and the native
router beside it). RSS is read when the host is idle after loading, then
wrk lists the account's 100k ids from 16 connections for 5 s (each answer
is ~3.8 MB of JSON), then RSS is read every second for up to 60 s. Reported:
RSS before, peak, 5 s after, at the end, and how long it took to come back
within 20% of before (the goal of the issue "Close to the machine's limits").

Knobs: BENCH_MEMORY_NOTES (100000), BENCH_MEMORY_WAIT (60)."""

import os
import tempfile
import time
from datetime import date

from benchlib import CONNECTIONS, ensure_wrk, load_accounts, rss_mib, start, table, write_lua, wrk

NOTES = int(os.environ.get("BENCH_MEMORY_NOTES", "100000"))
WAIT = int(os.environ.get("BENCH_MEMORY_WAIT", "60"))
BURST_SECONDS = 5


def burst(host, base, workdir, script, name):
    lines = load_accounts(base, 1, NOTES, False)
    ids = os.path.join(workdir, f"ids-{name}")
    with open(ids, "w") as f:
        f.write(lines[0] + "\n")
    time.sleep(3)
    before = rss_mib(host.pid, "VmRSS")
    load = wrk(base, "list", ids, script, BURST_SECONDS)
    peak = rss_mib(host.pid, "VmHWM")
    samples = []
    back_after = None
    for second in range(1, WAIT + 1):
        time.sleep(1)
        rss = rss_mib(host.pid, "VmRSS")
        samples.append(rss)
        if back_after is None and rss <= before * 1.2:
            back_after = second
        if back_after is not None and second >= 5:  # "5 s after" is a sample
            break
    return {
        "before_mib": before, "peak_mib": peak, "after_5s_mib": samples[4] if len(samples) > 4 else None,
        "end_mib": samples[-1], "back_within_20pct_after_s": back_after, "lists_per_s": load["rps"],
        "samples_mib": samples,
    }


def run():
    ensure_wrk()
    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        for router in ["wasm", "native"]:
            args = ["--shards", "0", "--max-requests-per-account", "1000"]
            if router == "native":
                args += ["--router", "native-migrate"]
            host, base = start(args, workdir, f"memory-{router}")
            try:
                rows[router] = burst(host, base, workdir, script, router)
            finally:
                host.terminate()
                host.wait()
    return {
        "meta": {"date": date.today().isoformat(),
                 "load": f"1 account x {NOTES:,} notes, plain mode; wrk -t2 -c{CONNECTIONS} -d{BURST_SECONDS}s listing it; "
                         f"RSS every second for up to {WAIT} s"},
        "rows": rows,
    }


def markdown(results):
    labels = {"wasm": "Wasm plugin", "native": "native router"}
    rows = []
    for router, r in results["rows"].items():
        back = f"{r['back_within_20pct_after_s']} s" if r["back_within_20pct_after_s"] is not None else f"not within {WAIT} s"
        rows.append([labels[router], f"{r['lists_per_s']:,.0f}", f"{r['before_mib']} MiB", f"{r['peak_mib']} MiB",
                     f"{r['after_5s_mib']} MiB", f"{r['end_mib']} MiB ({r['end_mib'] / r['before_mib']:.2f}×)", back])
    return (f"Run {results['meta']['date']}: {results['meta']['load']}.\n\n"
            + table(["host", "lists/s", "RSS before", "peak", "5 s after", "last read", "back within 20%"], rows))

"""Compare: this build's host against another revision's, alternating, in
one run, with the same load (`cargo xtask bench compare REV`).

Every other table compares two hosts of one build, so a change that slows
every row hides in their ratio; this one compares builds. REV is checked out
in a worktree (target/compare/tree) and built there with its own
`cargo xtask build` into target/compare/target (kept, so bisecting rebuilds
only what changed). Each host serves its own build's migrate plugin, or its
own native router, started with `serve` directly (old revisions have no
`launch`; flags they lack are left out).

Rows: GET, list, the mix and update, plain mode, 8 accounts x 50 notes of
200 B, Wasm plugin and native router; BENCH_ROUNDS rounds of BENCH_SECONDS
alternating REV / HEAD per row.

Knobs: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_COMPARE_ROUTERS (wasm,native),
BENCH_COMPARE_SCENARIOS (get,list,mix,update). To bisect a regression of one row:
`BENCH_COMPARE_ROUTERS=native BENCH_COMPARE_SCENARIOS=get BENCH_ROUNDS=2 cargo xtask bench compare REV`
for each REV `git bisect` proposes; only what changed since the last REV is rebuilt."""

import os
import re
import subprocess
import sys
import tempfile
from datetime import date

from benchlib import CONNECTIONS, HOST, ROOT, TARGET, ensure_wrk, load_accounts, mean_runs, table, write_lua, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SCENARIOS = os.environ.get("BENCH_COMPARE_SCENARIOS", "get,list,mix,update").split(",")
ROUTERS = os.environ.get("BENCH_COMPARE_ROUTERS", "wasm,native").split(",")
COMPARE = os.path.join(TARGET, "compare")
TREE = os.path.join(COMPARE, "tree")
OLD_TARGET = os.path.join(COMPARE, "target")


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def build(rev):
    """Checks REV out in the worktree and builds it; (binary, migrate.wasm, commit)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if not os.path.isdir(TREE):
        os.makedirs(COMPARE, exist_ok=True)
        git("worktree", "add", "--detach", "--force", TREE, commit)
    else:
        git("checkout", "--detach", "--force", commit, cwd=TREE)
    print(f"bench compare: building {commit[:10]} in {TREE}", file=sys.stderr)
    subprocess.run(["cargo", "xtask", "build"], cwd=TREE, check=True, env=dict(os.environ, CARGO_TARGET_DIR=OLD_TARGET))
    return os.path.join(OLD_TARGET, "release", "notes-host"), os.path.join(OLD_TARGET, "plugins", "migrate.wasm"), commit


class Served:
    """A host started with `serve` (stdout's first line names its URL)."""

    def __init__(self, binary, args, workdir, name):
        help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
        flags = ["--listen", "127.0.0.1:0", "--data-dir", os.path.join(workdir, name), *args]
        if "--max-requests-per-account" in help_text:
            flags += ["--max-requests-per-account", "1000"]
        self.log = open(os.path.join(workdir, name + ".log"), "w")
        self.proc = subprocess.Popen([binary, "serve", *flags], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.proc.kill()
            sys.exit(f"{binary} did not start ({line!r}); see {self.log.name}")
        self.base = match.group(1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def router_args(binary, plugin, router):
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    if router == "wasm":
        return ["--plugin", plugin]
    return ["--router" if "--router" in help_text else "--strategy", "native-migrate"]


def run(rev):
    ensure_wrk()
    old_binary, old_plugin, commit = build(rev)
    new_plugin = os.path.join(TARGET, "plugins", "migrate.wasm")
    builds = {"rev": (old_binary, old_plugin), "head": (HOST, new_plugin)}
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        script = write_lua(workdir)
        for router in ROUTERS:
            hosts, ids = {}, {}
            try:
                for name, (binary, plugin) in builds.items():
                    hosts[name] = Served(binary, ["--shards", "0", *router_args(binary, plugin, router)], workdir, f"{name}-{router}")
                    lines = load_accounts(hosts[name].base, 8, 50, False)
                    ids[name] = os.path.join(workdir, f"{name}-{router}.ids")
                    open(ids[name], "w").write("\n".join(lines) + "\n")
                for scenario in SCENARIOS:
                    runs = {"rev": [], "head": []}
                    for _ in range(ROUNDS):
                        for name in ["rev", "head"]:
                            runs[name].append(wrk(hosts[name].base, scenario, ids[name], script, SECONDS))
                    row = {"router": router, "scenario": scenario, "rev": mean_runs(runs["rev"]), "head": mean_runs(runs["head"])}
                    row["ratio"] = round(row["head"]["rps"] / row["rev"]["rps"], 3)
                    rows.append(row)
                    print(f"{router:6} {scenario:6} {commit[:10]} {row['rev']['rps']:9.0f}  HEAD {row['head']['rps']:9.0f}  "
                          f"HEAD/REV {row['ratio']:.2f}", file=sys.stderr)
            finally:
                for host in hosts.values():
                    host.stop()
    return {
        "meta": {"date": date.today().isoformat(), "rev": commit, "head": git("rev-parse", "HEAD"),
                 "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
                 "load": f"plain mode, 8 accounts x 50 notes (200 B); wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds alternating REV / HEAD"},
        "rows": rows,
    }


def markdown(results):
    meta = results["meta"]
    head = meta["head"][:10] + (" + uncommitted changes" if meta["dirty"] else "")
    return (f"Run {meta['date']}: REV `{meta['rev'][:10]}` against HEAD `{head}`; {meta['load']}.\n\n"
            + table(["router", "scenario", "REV req/s", "HEAD req/s", "HEAD / REV", "REV p99", "HEAD p99"],
                    [[r["router"], r["scenario"], f"{r['rev']['rps']:,.0f}", f"{r['head']['rps']:,.0f}", f"**{r['ratio']:.2f}**",
                      f"{r['rev']['p99_ms']:.2f} ms", f"{r['head']['p99_ms']:.2f} ms"] for r in results["rows"]]))

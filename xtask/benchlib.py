"""What the HTTP benchmark scripts share: starting hosts, loading data
through the API, and running wrk. Standard library only (runs on a fresh
machine with python3)."""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HOST = os.path.join(TARGET, "release", "notes-host")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))

# wrk script: picks a random account and note per request; the scenario
# decides the request. Account and note ids come from a file ("account note"
# per line).
LUA = r"""
local ids = {}
local scenario = os.getenv("SCENARIO")
function init(args)
  for line in io.lines(args[1]) do
    local account, note = line:match("(%S+) (%S+)")
    ids[#ids + 1] = { account, note }
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
local function pick() return ids[math.random(#ids)] end
local function get(p) return wrk.format("GET", "/accounts/" .. p[1] .. "/notes/" .. p[2]) end
local function list(p) return wrk.format("GET", "/accounts/" .. p[1] .. "/notes") end
local function update(p)
  return wrk.format("PUT", "/accounts/" .. p[1] .. "/notes/" .. p[2], nil, '{"content":"updated by wrk"}')
end
local function create(p) return wrk.format("POST", "/accounts/" .. p[1] .. "/notes", nil, '{"content":"created by wrk"}') end
function request()
  local p = pick()
  if scenario == "get" then return get(p)
  elseif scenario == "list" then return list(p)
  elseif scenario == "update" then return update(p)
  elseif scenario == "create" then return create(p)
  elseif scenario == "steady" then -- the mix without creates: the data keeps its size
    local r = math.random(100)
    if r <= 65 then return get(p) elseif r <= 87 then return list(p) else return update(p) end
  else -- a Notely-like mix: mostly reads
    local r = math.random(100)
    if r <= 60 then return get(p) elseif r <= 80 then return list(p)
    elseif r <= 92 then return update(p) else return create(p) end
  end
end
"""


def ensure_wrk():
    if not shutil.which("wrk"):
        print("installing wrk (Debian package)", file=sys.stderr)
        subprocess.run("apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)",
                       shell=True, check=True)


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


def write_lua(workdir):
    path = os.path.join(workdir, "bench.lua")
    with open(path, "w") as f:
        f.write(LUA)
    return path


class Launched:
    """A host started by `notes-host launch`. `pid` is the host's own (for
    /proc and perf); terminate() stops the host through its launcher, and so
    does this script's end (the launcher's stdin closes)."""

    def __init__(self, launcher, pid):
        self.launcher = launcher
        self.pid = pid

    def terminate(self):
        self.launcher.terminate()

    def wait(self):
        return self.launcher.wait()


def start(args, workdir, name):
    """Starts `notes-host serve ARGS` on a free port through `notes-host
    launch` (the launcher the tests and the simulator use); returns
    (Launched, base URL)."""
    data = os.path.join(workdir, name)
    log = os.path.join(workdir, name + ".log")
    launcher = subprocess.Popen(
        [HOST, "launch", "--data-dir", data, "--", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
    )
    line = launcher.stdout.readline()  # the launcher gives up after 60 s
    if not line:
        launcher.wait()
        sys.exit(f"{name} did not start; see {log}")
    host = json.loads(line)
    return Launched(launcher, host["pid"]), host["url"]


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def rss_mib(pid, field):
    """VmRSS (now) or VmHWM (peak) of a process, in MiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def post_all(base, requests, threads=8):
    """POSTs every (path, body) with `threads` keep-alive connections; fails on
    any non-2xx. Bulk loading through the API, so data is written exactly as
    clients write it."""
    url = urllib.parse.urlparse(base)
    chunks = [requests[i::threads] for i in range(threads)]
    errors = []

    def worker(chunk):
        conn = http.client.HTTPConnection(url.hostname, url.port)
        for path, body in chunk:
            conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            response = conn.getresponse()
            text = response.read()
            if response.status >= 300:
                errors.append(f"POST {path}: {response.status} {text[:200]!r}")
                return
        conn.close()

    pool = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        sys.exit(errors[0])


def new_notes(account, count, content):
    """POSTs that create `count` notes in `account` (ids chosen here, so no
    response needs reading), and their 'account note' lines."""
    notes = [str(uuid.uuid4()) for _ in range(count)]
    return [(f"/accounts/{account}/notes", {"id": n, "content": content}) for n in notes], [f"{account} {n}" for n in notes]


def load_accounts(base, accounts, notes_each, migrating, content="x" * 200):
    """Creates `accounts` accounts with `notes_each` notes each; returns
    'account note' lines."""
    ids = [str(uuid.uuid4()) for _ in range(accounts)]
    post_all(base, [("/accounts", {"id": a, "name": "bench", "isMigrating": migrating}) for a in ids])
    posts, lines = [], []
    for a in ids:
        p, l = new_notes(a, notes_each, content)
        posts += p
        lines += l
    post_all(base, posts)
    return lines


def load_notes(base, account, count, content="x" * 200):
    """Adds `count` notes to `account`; returns 'account note' lines."""
    posts, lines = new_notes(account, count, content)
    post_all(base, posts)
    return lines


def wrk(base, scenario, ids_file, script, seconds, connections=CONNECTIONS):
    """One wrk run; returns req/s, p50/p99 in ms and the non-2xx count."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", script, base, "--", ids_file],
        env=dict(os.environ, SCENARIO=scenario), capture_output=True, text=True, check=True,
    ).stdout

    def latency_ms(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency_ms(50),
        "p99_ms": latency_ms(99),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def store_commits(base):
    """(commits, writes committed) so far, from the host's /metrics: group
    commit's `notes_store_commits_total` and `notes_store_committed_writes_total`."""
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    commits = re.search(r"^notes_store_commits_total (\d+)", text, re.M)
    writes = re.search(r"^notes_store_committed_writes_total (\d+)", text, re.M)
    return (int(commits.group(1)) if commits else 0, int(writes.group(1)) if writes else 0)


def mean_runs(runs):
    return {k: round(sum(r[k] for r in runs) / len(runs), 3) for k in runs[0]}


RESULTS = os.path.join(ROOT, "docs", "bench-results.json")
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")


def publish(section, results, markdown):
    """Stores one benchmark's results: under `section` in
    docs/bench-results.json (the other sections are kept), and its Markdown
    between `<!-- generated:section -->` and `<!-- /generated:section -->` in
    BENCHMARKS.md, so the prose around the tables stays hand-written."""
    everything = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            everything = json.load(f)
    everything[section] = results
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(everything, f, indent=2)
        f.write("\n")
    begin, end = f"<!-- generated:{section} -->", f"<!-- /generated:{section} -->"
    text = open(BENCHMARKS).read()
    if begin not in text or end not in text:
        print(f"BENCHMARKS.md has no {begin} … {end} block; printing instead", file=sys.stderr)
        print(markdown)
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(BENCHMARKS, "w") as f:
        f.write(f"{head}{begin}\n{markdown.strip()}\n{end}{tail}")
    print(markdown)


def table(header, rows):
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

#!/usr/bin/env bash
# Plugin lifecycle benchmarks (run by `cargo xtask bench plugins` after a build):
# - activation time: upload (validate + compile + precompile) vs load from the
#   precompiled artifact at restart vs swap to an already loaded plugin;
# - request latency during 20 swaps/s against steady state (wrk).
# Prints Markdown tables; `xtask/bench.py plugins` publishes them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
host=$target/release/notes-host
command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
port=18181; base=http://127.0.0.1:$port
dir=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
# `notes-host launch` (the launcher the tests and the simulator use) prints a
# line once the host listens, and stops the host on SIGTERM or when this
# script ends (its stdin, the coprocess pipe, closes).
start() { coproc LAUNCH { "$host" launch --data-dir "$dir/data" -- --listen 127.0.0.1:$port "$@" 2>>"$dir/log"; }
          pid=$LAUNCH_PID; read -r _ <&"${LAUNCH[0]}" || { cat "$dir/log"; exit 1; }; }
stop() { kill $pid; wait $pid 2>/dev/null || true; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start --plugin "$target/plugins/migrate.wasm"
account=$(curl -s -XPOST $base/accounts -d '{"name":"bench","isMigrating":true}' | json '["id"]')
note=$(curl -s -XPOST $base/accounts/$account/notes -d '{"content":"bench"}' | json '["id"]')
faulty=$(curl -s -XPOST --data-binary @"$target/plugins/testing/faulty.wasm" $base/plugins | json '["digest"]')
migrate=$(curl -s $base/plugins | json '["active"]["digest"]')

# Upload of a new component (each run a fresh data dir, so nothing is cached).
upload=()
for i in 1 2 3 4 5; do stop; rm -rf "$dir/data"; start --plugin "$target/plugins/migrate.wasm"
  upload+=("$(curl -s -o /dev/null -w '%{time_total}' -XPOST --data-binary @"$target/plugins/testing/faulty.wasm" $base/plugins)"); done
curl -s -XPUT $base/plugins/active -d "{\"digest\":\"$faulty\"}" >/dev/null
compiled=$(curl -s $base/plugins | json '["active"]["loadMs"]')
# Restart: the active plugin comes back from its artifact.
artifact=()
for i in 1 2 3 4 5; do stop; start; artifact+=("$(curl -s $base/plugins | json '["active"]["loadMs"]')"); done
# Swap between two loaded plugins.
swap=()
for i in $(seq 10); do d=$([ $((i % 2)) = 0 ] && echo $faulty || echo $migrate)
  swap+=("$(curl -s -o /dev/null -w '%{time_total}' -XPUT $base/plugins/active -d "{\"digest\":\"$d\"}")"); done

account=$(curl -s -XPOST $base/accounts -d '{"name":"bench","isMigrating":true}' | json '["id"]')
note=$(curl -s -XPOST $base/accounts/$account/notes -d '{"content":"bench"}' | json '["id"]')
wrkrow() { wrk -t2 -c16 -d10s --latency "$base/accounts/$account/notes/$note" | awk '
  /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
  END {printf "%s | %s | %s | %s", rps, p50, p99, (bad==""?0:bad)}'; }
steady=$(wrkrow)
( end=$((SECONDS + 10)); i=0; while [ $SECONDS -lt $end ]; do d=$([ $((i % 2)) = 0 ] && echo $faulty || echo $migrate)
    curl -s -o /dev/null -XPUT $base/plugins/active -d "{\"digest\":\"$d\"}"; i=$((i + 1)); sleep 0.05; done; echo $i >"$dir/swaps" ) & swapper=$!
during=$(wrkrow); wait $swapper
ms() { python3 -c "import sys; print(f'{float(sys.argv[1])*1000:.1f} ms')" "$1"; }
cat <<TABLE
| activation | median of | time |
|---|---|---|
| upload of a new component: validate + compile + precompile + store (POST /plugins, HTTP round trip) | 5 | $(ms "$(printf '%s\n' "${upload[@]}" | median)") |
| load when activated right after upload (compiled in this process; \`loadMs\`) | 1 | ${compiled} ms |
| load from the precompiled artifact at restart (\`loadMs\`, no compilation) | 5 | $(printf '%s\n' "${artifact[@]}" | median) ms |
| swap to an already loaded plugin (PUT /plugins/active, HTTP round trip) | 10 | $(ms "$(printf '%s\n' "${swap[@]}" | median)") |

| GET one note, wrk -t2 -c16 -d10s | req/s | p50 | p99 | non-2xx |
|---|---|---|---|---|
| steady state | $steady |
| while swapping plugins ($(cat "$dir/swaps") swaps in 10 s) | $during |
TABLE

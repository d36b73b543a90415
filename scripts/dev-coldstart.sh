#!/usr/bin/env bash
# dev-coldstart.sh [RUNS] — cold start to a ready ACME directory of
# `anvil dev` (ECDSA hierarchy, a fresh temporary state directory each time)
# beside Pebble's, interleaved in one run so both see the same machine load.
# Ready means the first 200 to GET /directory (Pebble: /dir) over HTTPS,
# polled every 10 ms from the moment the process is spawned. Also prints the
# CPU time (user+sys) each process had used by then, which load does not
# inflate, and `anvil dev`'s own logged cold_start.
#
# Pebble is `go install`ed into var/coldstart/bin (GOBIN) the first time:
# PEBBLE_VERSION (default v2.10.3). ANVIL_BIN defaults to bin/anvil.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=$PWD/var/coldstart
mkdir -p "$work/bin"
anvil=${ANVIL_BIN:-bin/anvil}
anvil=$(cd "$(dirname "$anvil")" && pwd)/$(basename "$anvil")
ver=${PEBBLE_VERSION:-v2.10.3}
if [ ! -x "$work/bin/pebble" ]; then
  GOBIN=$work/bin go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$ver"
fi
src=$(go env GOMODCACHE)/github.com/letsencrypt/pebble/v2@$ver
sed -e 's#0.0.0.0:14000#127.0.0.1:34000#; s#0.0.0.0:15000#127.0.0.1:35000#' \
    -e "s#test/certs#$src/test/certs#g" "$src/test/config/pebble-config.json" > "$work/pebble.json"

now() { date +%s.%N; }
cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
ready() { for _ in $(seq 6000); do curl -ksf -o /dev/null "$1" && return 0; sleep 0.01; done; return 1; }

for run in $(seq "$runs"); do
  echo "run $run, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  tmp=$(mktemp -d)
  t0=$(now)
  env -i PATH="$PATH" TMPDIR="$tmp" "$anvil" dev --listen 127.0.0.1:34100 --management-listen 127.0.0.1:35100 >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  ready https://127.0.0.1:34100/directory
  printf '  anvil dev  %6.3f s wall  %s s cpu  (logged %s)\n' "$(echo "$(now) - $t0" | bc)" "$(cpu $pid)" "$(grep -o 'cold_start=[^ ]*' "$tmp/err" | cut -d= -f2)"
  kill $pid; wait $pid || true
  t0=$(now)
  "$work/bin/pebble" -config "$work/pebble.json" >"$tmp/pebble.log" 2>&1 &
  pid=$!
  ready https://127.0.0.1:34000/dir
  printf '  pebble     %6.3f s wall  %s s cpu\n' "$(echo "$(now) - $t0" | bc)" "$(cpu $pid)"
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$tmp"
done

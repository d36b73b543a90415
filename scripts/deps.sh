#!/usr/bin/env bash
# deps.sh run|test — make sure what `make run` or `make test` needs is installed.
# As root on Debian it installs what is missing with apt-get; otherwise it prints
# the exact command to run and fails. It never changes anything that is present.
set -euo pipefail

purpose=${1:-test}

# Debian package, and a command or file that proves it is installed.
declare -A need=(
  [softhsm2]="softhsm2-util"
)
if [ "$purpose" = test ]; then
  need+=(
    [opensc]="pkcs11-tool"
    [p11-kit]="p11-kit"
    [p11-kit-modules]="file:/usr/lib/$(uname -m)-linux-gnu/pkcs11/p11-kit-client.so"
    [openssl]="openssl"
    [certbot]="certbot"
    [postgresql]="glob:/usr/lib/postgresql/*/bin/initdb"
    [prometheus]="promtool"
    [systemd]="systemd-analyze"
    [gcc]="gcc"
    [libp11-kit-dev]="file:/usr/include/p11-kit-1/p11-kit/pkcs11.h"
    [nodejs]="node"  # runs acme-client 1.x, a real ACME v1 client (e2e/legacy_npm_test.go)
    [npm]="npm"
  )
fi

missing=()
for pkg in "${!need[@]}"; do
  probe=${need[$pkg]}
  case "$probe" in
    file:*) [ -e "${probe#file:}" ] || missing+=("$pkg") ;;
    glob:*) compgen -G "${probe#glob:}" >/dev/null || missing+=("$pkg") ;;
    *) command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing ${missing[*]}. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Go is not taken from Debian (Debian 12 ships an older one): say what is needed.
want_go=$(awk '/^go /{print $2}' "$(dirname "$0")/../go.mod")
if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go $want_go or newer is required: https://go.dev/dl/ (e.g. /usr/local/go/bin on PATH)" >&2
  exit 1
fi
have_go=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -1)" != "$want_go" ]; then
  echo "deps: Go $want_go or newer is required, found $have_go" >&2
  exit 1
fi

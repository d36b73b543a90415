#!/usr/bin/env bash
# run-dev.sh [--init-only] — what `make run` does, from the repository root:
#  1. the first time, two throwaway SoftHSM2 tokens under var/dev/softhsm
#     (anvil-dev-root for the offline root, anvil-dev-online for the issuers),
#     and the dev hierarchy from configs/dev/ceremonies (root, ECDSA and RSA
#     intermediates, a root CRL), with transcripts in var/dev/pki;
#  2. `anvil serve` with configs/dev/serve.yaml: SQLite in var/dev, ACME over
#     HTTPS on localhost:14000.
# Delete var/dev to start over.
set -euo pipefail
cd "$(dirname "$0")/.."

VAR=var/dev
BIN=${ANVIL_BIN:-bin/anvil}
mkdir -p "$VAR/pki" "$VAR/ceremonies"
export SOFTHSM2_CONF="$PWD/$VAR/softhsm/softhsm2.conf"

if [ ! -f "$VAR/pki/.hierarchy-done" ]; then
  if [ -e "$VAR/softhsm" ] || [ -n "$(ls -A "$VAR/pki")" ]; then
    echo "run-dev: $VAR holds a half-built hierarchy (a ceremony failed?). Remove $VAR and run again." >&2
    exit 1
  fi
  echo "== creating SoftHSM2 tokens in $VAR/softhsm"
  softhsm-test/softhsm-token.sh "$VAR/softhsm" anvil-dev-root >/dev/null
  softhsm-test/softhsm-token.sh "$VAR/softhsm" anvil-dev-online >/dev/null
  # Fill in the dates the dev ceremony files leave open, relative to today.
  today=$(date -u +%Y-%m-%dT00:00:00Z)
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  fill=(-e "s/@TODAY@/$today/g" -e "s/@NOW@/$now/g"
        -e "s/@IN_20_YEARS@/$(date -u -d '+20 years' +%Y-%m-%dT00:00:00Z)/g"
        -e "s/@IN_5_YEARS@/$(date -u -d '+5 years' +%Y-%m-%dT00:00:00Z)/g"
        -e "s/@IN_30_DAYS@/$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)/g")
  for f in configs/dev/ceremonies/*.yaml; do
    out="$VAR/ceremonies/$(basename "$f")"
    sed "${fill[@]}" "$f" > "$out"
    echo "== ceremony $(basename "$f")"
    "$BIN" ceremony --config "$out" >/dev/null
  done
  touch "$VAR/pki/.hierarchy-done"
  echo "== dev hierarchy ready in $VAR/pki (transcripts: $VAR/pki/*.transcript.txt)"
fi

# A hierarchy made before the audit log existed gets its audit key now.
if [ ! -f "$VAR/pki/audit.pub.pem" ]; then
  echo "== ceremony 09-audit-key.yaml"
  cp configs/dev/ceremonies/09-audit-key.yaml "$VAR/ceremonies/"
  "$BIN" ceremony --config "$VAR/ceremonies/09-audit-key.yaml" >/dev/null
fi

cat "$VAR/pki/root.pem" > "$VAR/pki/ca-bundle.pem"
if [ "${1:-}" = "--init-only" ]; then
  exit 0
fi

cat <<MSG

  ACME directory:  https://localhost:14000/directory
  CA bundle:       $PWD/$VAR/pki/ca-bundle.pem   (the dev root; the server's own TLS certificate chains to it)
  Try it with certbot (in another terminal):
    REQUESTS_CA_BUNDLE=$PWD/$VAR/pki/ca-bundle.pem certbot certonly --standalone \\
      --server https://localhost:14000/directory --http-01-port 5002 \\
      --register-unsafely-without-email --agree-tos -d hello.localhost \\
      --config-dir $PWD/var/certbot --work-dir $PWD/var/certbot --logs-dir $PWD/var/certbot

MSG
exec "$BIN" serve --config configs/dev/serve.yaml

#!/usr/bin/env bash
# softhsm-token.sh DIR LABEL — the shell entry point of softhsm-test.
#
# Makes (or reuses) a private SoftHSM2 token directory DIR with its own
# softhsm2.conf, never the system one, and initialises a token LABEL in it with a
# random user PIN written to DIR/LABEL.pin (mode 0600). A label that already
# exists is refused. Prints shell assignments for the caller to eval:
#   SOFTHSM2_CONF=... SOFTHSM2_MODULE=... TOKEN_LABEL=... TOKEN_PIN_FILE=...
#
# softhsm2-util takes PINs only as arguments; these are throwaway PINs for a
# development or test token in a private directory. Production PINs never pass
# through this script.
set -euo pipefail

dir=${1:?usage: softhsm-token.sh DIR LABEL}
label=${2:?usage: softhsm-token.sh DIR LABEL}

module=${SOFTHSM2_MODULE:-}
if [ -z "$module" ]; then
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && module=$m && break
  done
fi
if [ -z "$module" ] || ! command -v softhsm2-util >/dev/null; then
  echo "softhsm-token: SoftHSM2 is not installed: run 'apt-get install -y softhsm2'" >&2
  exit 1
fi

mkdir -p "$dir/tokens"
chmod 700 "$dir" "$dir/tokens"
dir=$(cd "$dir" && pwd)
conf="$dir/softhsm2.conf"
if [ ! -f "$conf" ]; then
  printf '# written by softhsm-token.sh; private to this directory\ndirectories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir/tokens" > "$conf"
fi
export SOFTHSM2_CONF=$conf

if softhsm2-util --show-slots | sed -n 's/^ *Label: *//p' | sed 's/ *$//' | grep -qxF "$label"; then
  echo "softhsm-token: a token labelled '$label' already exists in $dir/tokens" >&2
  exit 1
fi

pin=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
sopin=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$sopin" >/dev/null
umask 077
printf '%s\n' "$pin" > "$dir/$label.pin"

echo "SOFTHSM2_CONF=$conf"
echo "SOFTHSM2_MODULE=$module"
echo "TOKEN_LABEL=$label"
echo "TOKEN_PIN_FILE=$dir/$label.pin"

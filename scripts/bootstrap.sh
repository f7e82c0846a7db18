#!/usr/bin/env bash
# Installs whatever is missing for `make run` / `make test` on a fresh Debian/Ubuntu machine:
# system packages (as root), the .venv, the package with its native extensions and the test extras,
# and the npm test clients. Idempotent: when nothing changed it only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.streamgate-installed"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- system packages: "check-command|debian-package" pairs ------------------------------------------
need=()
check() { # $1 = shell test that succeeds when present, $2 = package
  if ! eval "$1" >/dev/null 2>&1; then need+=("$2"); fi
}
check 'test -x /usr/bin/python3'                          python3
check '/usr/bin/python3 -c "import ensurepip, venv"'      python3-venv
check 'test -n "$(ls /usr/include/python3*/Python.h 2>/dev/null)"' python3-dev
check 'command -v gcc'                                    gcc
check 'command -v g++'                                    g++
check 'command -v pkg-config'                             pkg-config
check 'test -f /usr/include/hs/hs.h'                      libhyperscan-dev
check 'test -f /usr/include/re2/re2.h'                    libre2-dev
check 'command -v kcat'                                   kcat
check 'command -v mosquitto || test -x /usr/sbin/mosquitto' mosquitto
check 'command -v mosquitto_pub'                          mosquitto-clients
check 'command -v node'                                   nodejs
check 'command -v npm'                                    npm
check 'command -v openssl'                                openssl
check 'command -v socat'                                  socat
check 'command -v chromium'                               chromium
check 'command -v chromedriver'                           chromium-driver
check 'command -v curl'                                   curl
check 'test -f /etc/ssl/certs/ca-certificates.crt'        ca-certificates

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    say "missing system packages: ${need[*]}"
    say "run as root, or: sudo apt-get install ${need[*]}"
    exit 1
  fi
fi

# --- virtualenv and the package ---------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
newest=$(find pyproject.toml setup.py _native -type f -newer "$STAMP" 2>/dev/null | head -1 || true)
if [ ! -f "$STAMP" ] || [ -n "$newest" ]; then
  say "installing streamgate with native extensions and test extras into .venv"
  # pip's output goes to a log that is shown only when something fails
  pipq() {
    if ! "$VENV/bin/pip" install -q --disable-pip-version-check "$@" > "$VENV/pip.log" 2>&1; then
      grep -v "is ignored: it is neither" "$VENV/pip.log" >&2; say "pip install failed (log: $VENV/pip.log)"; exit 1
    fi
  }
  pipq --upgrade pip 'setuptools>=77' wheel 'Cython>=3.0'
  pipq --no-build-isolation -e ".[test,bench,dev]"
  # editable installs keep the .so next to the sources; build in place so tests import the native code
  "$VENV/bin/python" setup.py -q build_ext --inplace > .venv/build_ext.log 2>&1 || { cat .venv/build_ext.log; exit 1; }
  "$VENV/bin/python" -c "import gateway" || exit 1
  touch "$STAMP"
fi

# --- npm test clients (kafkajs) ---------------------------------------------------------------------
if [ -f tests/js/package.json ]; then
  if [ ! -d tests/js/node_modules ] || [ tests/js/package.json -nt tests/js/node_modules ]; then
    say "installing npm test clients"
    (cd tests/js && npm install --silent --no-audit --no-fund >/dev/null)
    touch tests/js/node_modules
  fi
fi

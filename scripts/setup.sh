#!/usr/bin/env bash
# Installs everything corral needs on a Debian 12 machine, idempotently:
# Debian packages (only the missing ones), then a virtualenv from the hashed lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(bubblewrap gosu debootstrap busybox-static python3-venv python3-pip wrk haproxy skopeo umoci prometheus postgresql
              docker.io podman
              docker-registry git ca-certificates chromium libseccomp2)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# The Debian interpreter, not a pyenv or conda one: the demo and CI must see what a
# newcomer on a fresh Debian 12 sees.
PYTHON=${CORRAL_PYTHON:-/usr/bin/python3}
stamp=.venv/.installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
# corral's own modules compiled to bytecode, as a wheel install does: an editable install
# leaves that to the first import, which never happens where PYTHONDONTWRITEBYTECODE is set
# (every command would then compile ~60 modules again, ~50 ms). Only changed files are redone.
compile_sources() { .venv/bin/python -m compileall -q src >/dev/null; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  compile_sources
  exit 0
fi
echo "setup: creating .venv from requirements.lock"
rm -rf .venv
"$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
compile_sources
echo "$want" > "$stamp"

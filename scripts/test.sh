#!/bin/sh
# Install everything the test suite needs (Debian packages, Python packages) and run it.
set -e
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# Debian packages the tests drive for real.
APT_PACKAGES="ca-certificates"
missing=""
for pkg in $APT_PACKAGES; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
EXTRAS=test . scripts/venv.sh
.venv/bin/python -m pytest "$@"

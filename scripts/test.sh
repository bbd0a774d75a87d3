#!/bin/sh
# Install everything the test suite needs (Debian packages, Python packages) and run it.
set -e
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# Debian packages the tests drive for real (the mail clients: tests/smtp/test_real_clients.py and the guides of
# tests/web/test_guides.py; PostgreSQL and Redis: tests/test_scaleout.py; systemd-analyze:
# tests/cli/test_install_service.py; pebble, the ACME server: tests/services/test_acme.py; spamassassin and spamd, the
# deliverability checker's spam score: tests/checker/).
APT_PACKAGES="ca-certificates curl swaks libnet-ssleay-perl msmtp php-cli libphp-phpmailer php-symfony-mailer nodejs chromium postgresql redis-server systemd pebble spamassassin spamd"
missing=""
for pkg in $APT_PACKAGES; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
# Nodemailer for tests/smtp/test_real_clients.py. Debian's nodejs needs its npm package; NodeSource's
# nodejs bundles npm and conflicts with Debian's, so install it only when it is missing.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi
npm ci --prefix tests/clients --no-audit --no-fund
EXTRAS=test,scale . scripts/venv.sh
# Lint and the architecture contracts (pyproject.toml; tests/test_architecture.py runs them too).
.venv/bin/ruff check appliance tests bench
.venv/bin/ruff format --check appliance tests bench
.venv/bin/lint-imports
# The whole suite twice: on the embedded defaults (SQLite, SqliteHuey), then in the scale-out mode
# of DESIGN §5 on real PostgreSQL and Redis servers that the tests start on loopback. Each pass runs
# on one pytest-xdist worker per core (TEST_WORKERS overrides it; 0 runs in this process), a test
# module staying on one worker; every worker starts its own PostgreSQL and Redis.
WORKERS="-n ${TEST_WORKERS:-auto} --dist loadscope"
.venv/bin/python -m pytest $WORKERS "$@"
SCALEOUT_TESTS=1 .venv/bin/python -m pytest $WORKERS "$@"

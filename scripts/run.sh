#!/bin/sh
# Install the appliance into ./.venv and run it on its embedded defaults
# (SQLite and data under ./data, a generated TLS certificate, an admin login printed once).
set -e
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python app.py "$@"

#!/bin/sh
# Install (or upgrade) the appliance as a systemd service on Debian, as root. The Vagrantfile runs it.
#
#   sudo ./scripts/install-service.sh
#   sudo APPLIANCE_HOSTNAME=relay.example.com ./scripts/install-service.sh
#
# The code goes to APPLIANCE_PREFIX (/opt/appliance) with its own .venv on Debian's python3; the data
# to APPLIANCE_DATA_DIR (/var/lib/appliance), owned by the system user `appliance`, which runs the
# service. On the first install, every APPLIANCE_* variable given to this script is written to
# /etc/appliance.env, which the service reads (edit it, then `systemctl restart appliance`).
# Running it again upgrades the code and keeps the data, /etc/appliance.env and the admins.
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  # Debian's python3, not a user's
[ "$(id -u)" = 0 ] || { echo "install-service.sh: run it as root (sudo)" >&2; exit 1; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${APPLIANCE_PREFIX:-/opt/appliance}
DATA=${APPLIANCE_DATA_DIR:-/var/lib/appliance}
ENV_FILE=/etc/appliance.env
UNIT=/etc/systemd/system/appliance.service

# 1. The code (what was there before, but the .venv, is replaced) and its virtual environment.
mkdir -p "$PREFIX"
if [ "$SRC" != "$(cd "$PREFIX" && pwd)" ]; then
  find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
  tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./data --exclude='*.egg-info' \
      --exclude=__pycache__ --exclude=./tests/clients/node_modules -cf - . | tar -C "$PREFIX" -xf -
fi
chmod 0755 "$PREFIX"
(cd "$PREFIX" && . scripts/venv.sh)

# 2. A system user that owns the data and nothing else.
id appliance >/dev/null 2>&1 ||
  useradd --system --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin appliance
install -d -o appliance -g appliance -m 0750 "$DATA"

# 3. The settings the service reads.
if [ -f "$ENV_FILE" ]; then
  echo "keeping $ENV_FILE (settings given to this run are not applied: edit that file)"
else
  {
    echo "# Settings of the appliance service: APPLIANCE_<NAME>=value, one a line (README, Configuration)."
    echo "# After a change: systemctl restart appliance"
    echo "APPLIANCE_DATA_DIR=$DATA"
    env | grep '^APPLIANCE_' | grep -v -e '^APPLIANCE_PREFIX=' -e '^APPLIANCE_DATA_DIR=' | sort || true
  } > "$ENV_FILE"
  chmod 0640 "$ENV_FILE"
  chgrp appliance "$ENV_FILE"
fi

# 4. `appliance` on the PATH: the CLI as the service's user with the service's settings. Then the
#    schema, and the first admin: created here so its password is shown to whoever installs, once,
#    and never lands in the service's journal.
sed -e "s|@PREFIX@|$PREFIX|g" "$PREFIX/scripts/appliance-cli" > /usr/local/bin/appliance
chmod 0755 /usr/local/bin/appliance
/usr/local/bin/appliance migrate
/usr/local/bin/appliance admin first

# 5. The systemd unit.
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@DATA_DIR@|$DATA|g" "$PREFIX/scripts/appliance.service" > "$UNIT"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --quiet appliance
  systemctl restart appliance
  echo "started: systemctl status appliance; what listens where: journalctl -u appliance -o cat"
else
  echo "systemd is not running here; $UNIT is written. Start the service by hand with:"
  echo "  (set -a; . $ENV_FILE; cd $DATA; exec runuser -u appliance -- $PREFIX/.venv/bin/appliance serve)"
fi
echo "next: sudo appliance accounts create \"My shop\"   (the CLI, as the service's user)"

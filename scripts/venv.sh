# Sourced by run.sh and test.sh: make ./.venv with the appliance installed (editable) in it.
# EXTRAS selects optional dependency groups, e.g. EXTRAS=test,scale.
# The install is skipped when pyproject.toml and EXTRAS are what the last install had: the code is
# installed editable, so only a change of dependencies needs pip.
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
_installed="$(sha256sum pyproject.toml | cut -d' ' -f1) ${EXTRAS:-}"
if [ "$(cat .venv/.appliance-installed 2>/dev/null)" != "$_installed" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
  echo "$_installed" > .venv/.appliance-installed
fi
unset _installed

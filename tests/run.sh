#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian / Raspberry Pi OS
# machine that has only python3 and python3-venv:  bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'

# Debian packages the tests use: the browser tests drive Debian's chromium (a
# Playwright browser download needs the internet and does not run on every
# Pi); QR codes are decoded with zbar; the install script is linted by
# ShellCheck and its units verified by systemd-analyze; the bench WiFi's
# per-phone connection cap is checked and loaded by nft; the federation's stories
# start their own Mosquitto broker on loopback (never the system service).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v zbarimg >/dev/null || missing+=(zbar-tools)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing+=(nftables)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
install_packages() {
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
  elif command -v sudo >/dev/null; then
    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
  else
    return 1
  fi
}
if [ "${#missing[@]}" -gt 0 ] && ! install_packages "${missing[@]}"; then
  echo "tests/run.sh: could not install ${missing[*]}; as root run: apt-get update && apt-get install -y ${missing[*]}" >&2
  echo "tests/run.sh: running the tests anyway; the tests that need them will fail." >&2
fi

exec .venv/bin/python -m pytest "$@"

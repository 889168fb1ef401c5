#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian / Raspberry Pi OS
# machine that has only python3 and python3-venv:  bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'

# The browser tests drive Debian's chromium (a Playwright browser download
# needs the internet and does not run on every Pi).
install_chromium() {
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  elif command -v sudo >/dev/null; then
    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  else
    return 1
  fi
}
if [ ! -x /usr/bin/chromium ] && ! install_chromium; then
  echo "tests/run.sh: could not install chromium; as root run: apt-get update && apt-get install -y chromium" >&2
  echo "tests/run.sh: running the tests anyway; the browser tests will fail." >&2
fi

exec .venv/bin/python -m pytest "$@"

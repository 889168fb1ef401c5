#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian / Raspberry Pi OS
# machine that has only python3 and python3-venv:  bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test,postgresql]'  # psycopg for the PostgreSQL run below

# Debian packages the tests use: the browser tests drive Debian's chromium (a
# Playwright browser download needs the internet and does not run on every
# Pi); QR codes are decoded with zbar; the install script is linted by
# ShellCheck and its units verified by systemd-analyze; the bench WiFi's
# per-phone connection cap is checked and loaded by nft; the federation's stories
# start their own Mosquitto broker on loopback (never the system service); a city
# hub's PostgreSQL runs the marked stories a second time (below).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v zbarimg >/dev/null || missing+=(zbar-tools)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing+=(nftables)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
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

# SQLite first, the whole suite, as every bench runs it.
status=0
.venv/bin/python -m pytest "$@" || status=$?

# Then PostgreSQL (a city hub, issue 17): the tests marked `postgres` (tests/conftest.py's
# POSTGRES_STORIES) again, on a private throwaway cluster: its own data and socket folder in /tmp,
# a free port on 127.0.0.1, a random password, durability off (fsync: nothing in it outlives the run);
# never the system's service. PostgreSQL refuses to run as root, so as root it runs as `postgres`.
# TESTS_POSTGRES=skip leaves it out.
if [ "${TESTS_POSTGRES:-}" = skip ]; then
  exit "$status"
fi
pg_bin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ]; then
  echo "tests/run.sh: PostgreSQL is not installed (apt-get install postgresql); its run is left out." >&2
  exit 1
fi
pg_dir=$(mktemp -d /tmp/safebench-pg.XXXXXX)
pg_port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_password=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(16))')
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
# shellcheck disable=SC2317  # run by the trap
stop_pg() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_pg EXIT
printf '%s\n' "$pg_password" >"$pg_dir/password"
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --pwfile="$pg_dir/password" -A scram-sha-256 \
  -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -o \
  "-h 127.0.0.1 -p $pg_port -k $pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
pg_started=$SECONDS
pg_status=0
TESTS_POSTGRES_URL="postgresql://postgres:$pg_password@127.0.0.1:$pg_port/postgres" \
  .venv/bin/python -m pytest -m postgres "$@" || pg_status=$?
# 5: the tests asked for hold none marked postgres; not a failure.
if [ "$pg_status" -ne 0 ] && [ "$pg_status" -ne 5 ]; then status=$pg_status; fi
echo "tests/run.sh: the PostgreSQL run took $((SECONDS - pg_started)) s." >&2
exit "$status"

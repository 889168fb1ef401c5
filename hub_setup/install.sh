#!/usr/bin/env bash
# Turn a Raspberry Pi with Raspberry Pi OS Bookworm (or any Debian 12) into a
# Safe Bench hub: a system user, the hub in a virtual environment, its
# instance folder, systemd units for the web server (port 80), the scheduler,
# the radio bridge and a nightly backup, a udev rule for the radio, the bench
# WiFi with its captive page and a cap on each phone's connections, and
# journald limits for an SD card; on request (--mqtt-broker), the federation's
# MQTT broker (Mosquitto, TLS, a login and a topic of its own for each bench).
#
#   sudo hub_setup/install.sh [OPTIONS]           install on this machine
#   hub_setup/install.sh --root DIR [OPTIONS]     write every file it would install under DIR,
#                                                 print the commands it would run, touch nothing else
#
# Safe to run again, e.g. after `git pull` to update the hub: files are only
# replaced when they differ, and the options of the last run are remembered.
# Every installed file comes from hub_setup/files/. See hub_setup/README.md.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(dirname "$HERE")
TEMPLATES=$HERE/files

HUB_USER=safebench
# NetworkManager's shared mode gives the Pi this address, and BENCH_URL
# (what the posters print) points at it by default.
HUB_ADDRESS=10.42.0.1
HOTSPOT_ID=safebench-hotspot
RADIO_LINK=safebench-radio
ETC=/etc/safebench
WRAPPER=/usr/local/bin/safebench
HOTSPOT_FILE=/etc/NetworkManager/system-connections/$HOTSPOT_ID.nmconnection
DNSMASQ_FILE=/etc/NetworkManager/dnsmasq-shared.d/safebench.conf
JOURNALD_FILE=/etc/systemd/journald.conf.d/safebench.conf
# The bench WiFi's firewall: at most this many connections from one phone to
# the Pi (the hub's own WEB_CONNECTIONS_PER_ADDRESS is the same).
WIFI_CAP_UNIT=safebench-bench-wifi.service
WIFI_CAP_FILE=$ETC/bench-wifi.nft
CONNECTIONS_PER_PHONE=32
UNITS=(safebench.target safebench-web.service safebench-bridge.service
       safebench-backup.service safebench-backup.timer)
# The federation's broker (--mqtt-broker): Debian's Mosquitto, with our
# settings beside its own, and our password file, ACL and certificate here.
BROKER_CONF=/etc/mosquitto/conf.d/safebench-federation.conf
BROKER_DIR=/etc/mosquitto/safebench
BROKER_PORT=8883
# Until issue 14 the scheduler had a unit of its own: it runs in the bridge now
# (`safebench bridge --with-scheduler`), a Python process fewer in 512 MB.
RETIRED_UNITS=(safebench-worker.service)

usage() {
  cat <<EOF
Usage: sudo $0 [OPTIONS]
       $0 --root DIR [OPTIONS]

  --root DIR             stage: write every file under DIR, print the commands instead of running them
  --prefix DIR           where the hub's code and virtual environment go (default /opt/safebench)
  --instance DIR         the instance folder: database, secret key, settings (default /var/lib/safebench)
  --radio SPEC           the hub's radio (default serial:/dev/$RADIO_LINK, the udev rule's link)
  --ssid NAME            the bench WiFi's name (default SafeBench)
  --open-wifi            an open bench WiFi, no password (the default)
  --wpa2                 protect the bench WiFi with WPA2 and a generated password
  --wifi-password PW     protect it with WPA2 and this password (8 to 63 characters)
  --wifi-interface IF    the WiFi interface for the hotspot (default wlan0)
  --no-hotspot           no bench WiFi from the Pi (it is on another network); --hotspot to undo
  --backup-dir DIR       where the nightly backups go (default /var/backups/safebench)
  --keep N               how many nightly backups to keep (default 7)
  --mqtt-broker NAME     also run the broker of the federation NAME on this machine (TLS on port $BROKER_PORT,
                         each bench logs in with its own name and writes only under it); --no-mqtt-broker to undo
  --broker-host HOST     the name or IP address the benches dial for that broker (its certificate says it)
  --volatile-logs        keep the journal in RAM only (nothing written to the SD card, lost on reboot);
                         --persistent-logs to undo (the default)
  -h, --help             this text

Options not given keep the value of the last run ($ETC/install.conf).
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 2
}

note() {
  echo "install.sh: $*"
}

# -- options: defaults, then the last run's, then the command line -------------

ROOT=""
declare -A given=()
while [ $# -gt 0 ]; do
  case $1 in
    --root | --prefix | --instance | --radio | --ssid | --wifi-password | --wifi-interface | --backup-dir | --keep |  \
      --mqtt-broker | --broker-host)
      [ $# -ge 2 ] || die "$1 needs a value"
      if [ "$1" = --root ]; then ROOT=$2; else given[${1#--}]=$2; fi
      shift 2
      ;;
    --open-wifi) given[security]=open; shift ;;
    --wpa2) given[security]=wpa2; shift ;;
    --no-hotspot) given[hotspot]=no; shift ;;
    --hotspot) given[hotspot]=yes; shift ;;
    --no-mqtt-broker) given[mqtt-broker]=""; shift ;;
    --volatile-logs) given[journal]=volatile; shift ;;
    --persistent-logs) given[journal]=persistent; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || die "--root / is this machine: leave --root out (and run as root) to install for real"
fi

PREFIX=/opt/safebench
INSTANCE=/var/lib/safebench
RADIO=serial:/dev/$RADIO_LINK
HOTSPOT=yes
WIFI_INTERFACE=wlan0
SSID=SafeBench
WIFI_PASSWORD=""
BACKUP_DIR=/var/backups/safebench
BACKUP_KEEP=7
JOURNAL=persistent
BROKER_FEDERATION=""
BROKER_HOST=""

REMEMBERED=$ETC/install.conf
if [ -f "$ROOT$REMEMBERED" ]; then
  # Written by an earlier run (root's, mode 600), as KEY=value lines.
  # shellcheck source=/dev/null
  . "$ROOT$REMEMBERED"
fi

PREFIX=${given[prefix]:-$PREFIX}
INSTANCE=${given[instance]:-$INSTANCE}
RADIO=${given[radio]:-$RADIO}
HOTSPOT=${given[hotspot]:-$HOTSPOT}
WIFI_INTERFACE=${given[wifi-interface]:-$WIFI_INTERFACE}
SSID=${given[ssid]:-$SSID}
BACKUP_DIR=${given[backup-dir]:-$BACKUP_DIR}
BACKUP_KEEP=${given[keep]:-$BACKUP_KEEP}
JOURNAL=${given[journal]:-$JOURNAL}
# Set (even to nothing, by --no-mqtt-broker) wins over the last run's.
if [ -n "${given[mqtt-broker]+set}" ]; then BROKER_FEDERATION=${given[mqtt-broker]}; fi
BROKER_HOST=${given[broker-host]:-$BROKER_HOST}

generate_password() {
  # Twelve letters and digits, without the ones that look alike (l, 1, o, 0).
  python3 -c 'import secrets; a = "abcdefghijkmnpqrstuvwxyz23456789"; print("".join(secrets.choice(a) for _ in range(12)))'
}

if [ -n "${given[wifi-password]:-}" ]; then
  [ "${given[security]:-}" != open ] || die "--open-wifi and --wifi-password contradict each other"
  WIFI_PASSWORD=${given[wifi-password]}
elif [ "${given[security]:-}" = wpa2 ] && [ -z "$WIFI_PASSWORD" ]; then
  WIFI_PASSWORD=$(generate_password)
elif [ "${given[security]:-}" = open ]; then
  WIFI_PASSWORD=""
fi

# -- checks: everything below is written into config files as it is ------------

check_path() {  # NAME VALUE
  [[ $2 =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "$1 must be an absolute path of letters, digits and ._/+- (got '$2')"
  [[ $2 != */ ]] || die "$1 must not end with / (got '$2')"
}
check_path --prefix "$PREFIX"
check_path --instance "$INSTANCE"
check_path --backup-dir "$BACKUP_DIR"
[[ $RADIO =~ ^[A-Za-z0-9._:/@+-]+$ ]] || die "--radio: serial:/dev/..., serial:auto, tcp:HOST[:PORT] or sim (got '$RADIO')"
[[ $BACKUP_KEEP =~ ^[1-9][0-9]{0,3}$ ]] || die "--keep must be a number from 1 (got '$BACKUP_KEEP')"
[[ $WIFI_INTERFACE =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--wifi-interface: a name like wlan0 (got '$WIFI_INTERFACE')"
[[ $HOTSPOT =~ ^(yes|no)$ ]] || die "HOTSPOT in $REMEMBERED must be yes or no"
[[ $JOURNAL =~ ^(persistent|volatile)$ ]] || die "JOURNAL in $REMEMBERED must be persistent or volatile"
if [ -n "$BROKER_FEDERATION" ]; then
  # One level of an MQTT topic (safebench/NAME/BENCH/KIND) and one line of the ACL.
  [[ $BROKER_FEDERATION =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$ ]] ||
    die "--mqtt-broker: the federation's name, as its benches joined it: letters, digits, . _ - (got '$BROKER_FEDERATION')"
  [ -n "$BROKER_HOST" ] || die "--mqtt-broker needs --broker-host HOST: the name or IP address the benches dial"
  [[ $BROKER_HOST =~ ^[A-Za-z0-9.:-]{1,253}$ ]] ||
    die "--broker-host: a host name or an IP address (got '$BROKER_HOST')"
fi

# Printable ASCII without the characters that the env file, the
# NetworkManager keyfile or a shell would read as something else.
check_wifi_text() {  # WHAT VALUE MIN MAX
  local what=$1 value=$2
  [[ $value =~ ^[\ -~]*$ ]] || die "$what: letters, digits, spaces and punctuation only (plain ASCII)"
  [[ $value != *[\'\"\\\$\`\;]* ]] || die "$what must not contain ' \" \\ \$ \` or ;"
  if [ "${#value}" -lt "$3" ] || [ "${#value}" -gt "$4" ]; then
    die "$what must have $3 to $4 characters (has ${#value})"
  fi
  [[ $value != " "* && $value != *" " ]] || die "$what must not start or end with a space"
}
check_wifi_text --ssid "$SSID" 1 32
if [ -n "$WIFI_PASSWORD" ]; then
  check_wifi_text --wifi-password "$WIFI_PASSWORD" 8 63
fi

# -- doing things: for real, or only saying what would be done -----------------

run() {
  if [ -n "$ROOT" ]; then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

CHANGED=()

changed() {  # PATH: whether this run wrote or removed PATH
  local path
  for path in "${CHANGED[@]}"; do
    [ "$path" != "$1" ] || return 0
  done
  return 1
}

# put TARGET MODE OWNER TEXT: TEXT becomes ROOT/TARGET, which is replaced only when it differs.
put() {
  local target=$1 mode=$2 owner=$3 dest=$ROOT$1 dir tmp
  dir=$(dirname "$dest")
  mkdir -p "$dir"
  # A hidden name beside the target: udev, systemd, NetworkManager and dnsmasq
  # all skip it, and the final rename is atomic.
  tmp=$(mktemp "$dir/.$(basename "$dest").XXXXXX")
  printf '%s\n' "$4" >"$tmp"
  chmod "$mode" "$tmp"
  if [ -z "$ROOT" ]; then
    chown "$owner" "$tmp"
  fi
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" &&
    [ "$(stat -c %a "$dest")" = "$(stat -c %a "$tmp")" ] &&
    { [ -n "$ROOT" ] || [ "$(stat -c %U:%G "$dest")" = "$owner" ]; }; then
    rm -f "$tmp"
    return 0
  fi
  mv -f "$tmp" "$dest"
  CHANGED+=("$target")
  note "wrote $target"
}

drop() {  # TARGET: remove ROOT/TARGET if it is there
  if [ -e "$ROOT$1" ]; then
    rm -f "$ROOT$1"
    CHANGED+=("$1")
    note "removed $1"
  fi
}

make_dir() {  # PATH MODE OWNER
  mkdir -p "$ROOT$1"
  chmod "$2" "$ROOT$1"
  if [ -z "$ROOT" ]; then
    chown "$3" "$ROOT$1"
  fi
}

# render TEMPLATE: the file from hub_setup/files/ with every @NAME@ filled in.
render() {
  local text
  text=$(<"$TEMPLATES/$1")
  # Quoted replacements: bash 5.2 would otherwise read & in them as the match.
  text=${text//@USER@/"$HUB_USER"}
  text=${text//@PREFIX@/"$PREFIX"}
  text=${text//@INSTANCE@/"$INSTANCE"}
  text=${text//@ETC@/"$ETC"}
  text=${text//@WRAPPER@/"$WRAPPER"}
  text=${text//@RADIO@/"$RADIO"}
  text=${text//@RADIO_LINK@/"$RADIO_LINK"}
  text=${text//@BACKUP_DIR@/"$BACKUP_DIR"}
  text=${text//@BACKUP_KEEP@/"$BACKUP_KEEP"}
  text=${text//@JOURNAL_STORAGE@/"$JOURNAL"}
  text=${text//@HUB_ADDRESS@/"$HUB_ADDRESS"}
  text=${text//@HOTSPOT_ID@/"$HOTSPOT_ID"}
  text=${text//@WIFI_INTERFACE@/"$WIFI_INTERFACE"}
  text=${text//@SSID@/"$SSID"}
  text=${text//@CONNECTIONS_PER_PHONE@/"$CONNECTIONS_PER_PHONE"}
  text=${text//@BROKER_DIR@/"$BROKER_DIR"}
  text=${text//@BROKER_PORT@/"$BROKER_PORT"}
  text=${text//@FEDERATION@/"$BROKER_FEDERATION"}
  fill_block WIFI_SETTINGS "$(wifi_settings)"
  fill_block WIFI_SECURITY "$(wifi_security)"
  if [[ $text =~ @[A-Z_]+@ ]]; then
    die "hub_setup/files/$1: no value for ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text"
}

# fill_block NAME LINES: the line @NAME@ in render's text becomes LINES, or,
# when there are none, goes away with the blank line before it.
fill_block() {
  if [ -n "$2" ]; then
    text=${text//"@$1@"/"$2"}
  else
    text=${text//$'\n\n'"@$1@"/}
    text=${text//$'\n'"@$1@"/}
    text=${text//"@$1@"/}
  fi
}

# The bench WiFi for the hub's settings: the posters print its name, its
# password and the captive page's address.
wifi_settings() {
  [ "$HOTSPOT" = yes ] || return 0
  printf '%s\n' \
    "# The bench WiFi, as the hotspot makes it and the posters print it." \
    "SAFEBENCH_BENCH_WIFI_SSID='\"$SSID\"'" \
    "SAFEBENCH_BENCH_WIFI_PASSWORD='\"$WIFI_PASSWORD\"'" \
    "# On the bench WiFi any other address is answered with the bench page." \
    "SAFEBENCH_CAPTIVE_PORTAL=true"
}

wifi_security() {
  [ -n "$WIFI_PASSWORD" ] || return 0
  printf '%s\n' \
    "[wifi-security]" \
    "key-mgmt=wpa-psk" \
    "proto=rsn" \
    "pairwise=ccmp" \
    "group=ccmp" \
    "psk=$WIFI_PASSWORD" \
    "# Protected management frames off: the Pi's WiFi chip (brcmfmac) does not" \
    "# support them as an access point, and phones would fail to join." \
    "pmf=1"
}

# -- the steps -----------------------------------------------------------------

preflight() {
  command -v python3 >/dev/null || die "python3 is missing: sudo apt-get install python3"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "the hub needs Python 3.11 or newer (Raspberry Pi OS Bookworm has it)"
  if [ -n "$ROOT" ]; then
    note "staging into $ROOT: nothing outside it is changed"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "run it as root (sudo $0), or stage it with --root DIR"
  local codename=""
  if [ -r /etc/os-release ]; then
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  fi
  [ "$codename" = bookworm ] || note "made for Raspberry Pi OS / Debian bookworm, this is '${codename:-unknown}': going on"
}

install_packages() {
  local wanted=(python3-venv) missing=() package status
  if [ "$HOTSPOT" = yes ]; then
    wanted+=(network-manager dnsmasq-base nftables)
  fi
  if [ -n "$BROKER_FEDERATION" ]; then
    wanted+=(mosquitto)
  fi
  for package in "${wanted[@]}"; do
    status=""
    if [ -z "$ROOT" ]; then
      # shellcheck disable=SC2016  # ${Status} is dpkg-query's, not the shell's
      status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    fi
    if [ "$status" != "install ok installed" ]; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

create_user() {
  if [ -n "$ROOT" ] || ! getent passwd "$HUB_USER" >/dev/null; then
    run useradd --system --user-group --home-dir "$INSTANCE" --no-create-home \
      --shell /usr/sbin/nologin --comment "Safe Bench hub" "$HUB_USER"
  fi
  # The radio's serial port is the dialout group's, also for `safebench` at the terminal.
  run usermod --append --groups dialout "$HUB_USER"
}

# The code is copied to PREFIX/src and installed from there (not "editable"):
# the units may not read home folders, and a build in the checkout would
# leave root's files in it. Unchanged code is not reinstalled, so a run that
# only changes an option works at a bench without internet.
install_code() {
  local src=$ROOT$PREFIX/src new=$ROOT$PREFIX/.src.new part
  rm -rf "${new:?}"
  mkdir -p "$new"
  for part in pyproject.toml README.md server radio_bridge firmware_config hub_setup; do
    cp -R "$SOURCE/$part" "$new/"
  done
  find "$new" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
  if [ -z "$ROOT" ]; then
    chown -R root:root "$new"
    chmod -R u=rwX,go=rX "$new"
  fi
  if [ -n "$ROOT" ] || [ ! -x "$PREFIX/venv/bin/python" ]; then
    run python3 -m venv "$PREFIX/venv"
  fi
  if [ -z "$ROOT" ] && [ -x "$PREFIX/venv/bin/safebench" ] && diff -r -q -x build -x '*.egg-info' "$src" "$new" >/dev/null 2>&1; then
    note "the hub's code is unchanged: not reinstalled"
  else
    run "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade "$PREFIX/.src.new" ||
      die "pip could not install the hub into $PREFIX/venv: it needs the internet on the first run and after an update"
    # The templates compiled once, beside them, as pip compiled the modules: the web server only reads
    # them (3 MB less at rest than compiling its first pages; server/web/template_bytecode.py). -I: the
    # installed code, whatever folder this runs in.
    run "$PREFIX/venv/bin/python" -I -m server.web.template_bytecode ||
      die "the hub's templates could not be compiled: $PREFIX/venv is incomplete; run install.sh again"
  fi
  # In place only once installed, so after a failed pip the next run tries
  # again. (pip's build leaves build/ and *.egg-info in it: not the code.)
  rm -rf "${src:?}"
  mv "$new" "$src"
}

make_folders() {
  # Only the hub's user reads the database, the secret key and the backups
  # (not even its group: the units' UMask=0077 keeps every file in them 0600).
  make_dir "$INSTANCE" 0700 "$HUB_USER:$HUB_USER"
  make_dir "$BACKUP_DIR" 0700 "$HUB_USER:$HUB_USER"
  make_dir "$ETC" 0750 "root:$HUB_USER"
}

# install_file TARGET MODE OWNER: hub_setup/files/TARGET, filled in, becomes TARGET.
install_file() {
  local text
  text=$(render "${1#/}")
  put "$1" "$2" "$3" "$text"
}

install_files() {
  local unit
  install_file "$ETC/safebench.env" 0640 "root:$HUB_USER"
  install_file "$WRAPPER" 0755 root:root
  for unit in "${UNITS[@]}"; do
    install_file "/etc/systemd/system/$unit" 0644 root:root
  done
  for unit in "${RETIRED_UNITS[@]}"; do
    if [ -e "$ROOT/etc/systemd/system/$unit" ]; then
      run systemctl disable --now "$unit"
      drop "/etc/systemd/system/$unit"
    fi
  done
  install_file /etc/systemd/system/systemd-time-wait-sync.service.d/safebench.conf 0644 root:root
  install_file "$JOURNALD_FILE" 0644 root:root
  install_file /etc/udev/rules.d/99-safebench-radio.rules 0644 root:root
  if [ "$HOTSPOT" = yes ]; then
    # 600: NetworkManager refuses a connection file that others may read.
    install_file "$HOTSPOT_FILE" 0600 root:root
    install_file "$DNSMASQ_FILE" 0644 root:root
    install_file "$WIFI_CAP_FILE" 0644 root:root
    install_file "/etc/systemd/system/$WIFI_CAP_UNIT" 0644 root:root
  else
    drop "$HOTSPOT_FILE"
    drop "$DNSMASQ_FILE"
    if [ -e "$ROOT/etc/systemd/system/$WIFI_CAP_UNIT" ]; then
      # Stopping it takes the cap out of the kernel: only while its file is still there.
      run systemctl disable --now "$WIFI_CAP_UNIT"
    fi
    drop "/etc/systemd/system/$WIFI_CAP_UNIT"
    drop "$WIFI_CAP_FILE"
  fi
  install_broker
}

# The federation's broker: our settings in Mosquitto's conf.d, the ACL, a
# password file kept as the hosts fill it, and a certificate made once.
install_broker() {
  if [ -z "$BROKER_FEDERATION" ]; then
    # Without our settings Debian's Mosquitto (if it stays installed) listens on localhost only.
    drop "$BROKER_CONF"
    drop "$BROKER_DIR/acl"
    return
  fi
  make_dir "$BROKER_DIR" 0750 root:mosquitto
  install_file "$BROKER_CONF" 0644 root:root
  install_file "$BROKER_DIR/acl" 0640 root:mosquitto
  if [ ! -e "$ROOT$BROKER_DIR/passwd" ]; then
    # The benches' logins: sudo mosquitto_passwd $BROKER_DIR/passwd BENCH (hub_setup/README.md).
    put "$BROKER_DIR/passwd" 0640 root:mosquitto ""
  fi
  run bash "$HERE/broker-certificates.sh" "$BROKER_DIR" "$BROKER_HOST"
  run chgrp mosquitto "$BROKER_DIR/server.key"
  run chmod 0640 "$BROKER_DIR/server.key"
}

remember_options() {
  local text name
  text="# The options of the last hub_setup/install.sh run, the defaults of the next one."
  for name in PREFIX INSTANCE RADIO HOTSPOT WIFI_INTERFACE SSID WIFI_PASSWORD BACKUP_DIR BACKUP_KEEP JOURNAL \
    BROKER_FEDERATION BROKER_HOST; do
    text+=$'\n'$(printf '%s=%q' "$name" "${!name}")
  done
  put "$REMEMBERED" 0600 root:root "$text"
}

activate() {
  run systemctl daemon-reload
  if changed "$JOURNALD_FILE"; then
    run systemctl restart systemd-journald.service
  fi
  # The radio may be plugged in already: give it its link now.
  run udevadm control --reload
  run udevadm trigger --subsystem-match=tty --action=add
  # time-sync.target waits for NTP only while this runs (at most 90 s, the drop-in).
  run systemctl enable systemd-time-wait-sync.service
  run systemctl enable safebench-web.service safebench-bridge.service \
    safebench.target safebench-backup.timer
  # Restarting the target restarts both units (PartOf=), on the code just installed.
  run systemctl restart safebench.target
  run systemctl start safebench-backup.timer
  if [ -n "$BROKER_FEDERATION" ]; then
    run systemctl enable mosquitto.service
    run systemctl restart mosquitto.service
  elif changed "$BROKER_CONF"; then
    run systemctl try-restart mosquitto.service
  fi
  activate_hotspot
}

activate_hotspot() {
  if [ "$HOTSPOT" = yes ] || changed "$HOTSPOT_FILE"; then
    run nmcli connection reload
  fi
  if [ "$HOTSPOT" != yes ]; then
    return
  fi
  # The cap before the WiFi: restarted, so a changed cap or interface takes effect now.
  run systemctl enable "$WIFI_CAP_UNIT"
  run systemctl restart "$WIFI_CAP_UNIT"
  if [ -z "$ROOT" ]; then
    local current
    current=$(nmcli -g GENERAL.CONNECTION device show "$WIFI_INTERFACE" 2>/dev/null || true)
    if [ "$current" = "$HOTSPOT_ID" ] && ! changed "$HOTSPOT_FILE" && ! changed "$DNSMASQ_FILE"; then
      return  # already up, as it is
    fi
    if [ -n "$current" ] && [ "$current" != "$HOTSPOT_ID" ]; then
      # Switching now would cut off whoever reaches the Pi over this WiFi (perhaps this very session).
      note "$WIFI_INTERFACE is connected to '$current': the bench WiFi starts at the next boot, or now with"
      note "  sudo nmcli connection up $HOTSPOT_ID"
      return
    fi
  fi
  # The most likely reason for it to fail: no WiFi country set yet (the
  # WiFi stays off until then). Everything else is installed: say so, go on.
  run nmcli connection up "$HOTSPOT_ID" ||
    note "the bench WiFi did not start: is the WiFi country set (sudo raspi-config)? See hub_setup/README.md"
}

summary() {
  echo
  if [ -n "$ROOT" ]; then
    echo "Staged in $ROOT. On the Pi: sudo hub_setup/install.sh (with the same options, but --root)."
  else
    echo "The Safe Bench hub is installed and running: systemctl status 'safebench-*'"
  fi
  if [ "$HOTSPOT" = yes ]; then
    if [ -n "$WIFI_PASSWORD" ]; then
      echo "Bench WiFi: $SSID, WPA2, password: $WIFI_PASSWORD"
    else
      echo "Bench WiFi: $SSID, open (no password)"
    fi
    echo "Phones that join it are shown http://$HUB_ADDRESS/"
  fi
  echo "Radio: $RADIO; backups: $BACKUP_DIR (the last $BACKUP_KEEP)"
  if [ -n "$BROKER_FEDERATION" ]; then
    echo "Federation broker: mqtts://$BROKER_HOST:$BROKER_PORT for the federation '$BROKER_FEDERATION'."
    echo "  A login for each bench: sudo mosquitto_passwd $BROKER_DIR/passwd BENCHNAME && sudo systemctl reload mosquitto"
    echo "  Give every bench $BROKER_DIR/ca.crt (federation_ca_file in its settings.toml; see the README)."
  fi
  echo "First host account: safebench create-host YOURHANDLE   (then log in at /login)"
}

preflight
install_packages
create_user
install_code
make_folders
install_files
remember_options
activate
summary

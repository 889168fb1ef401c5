"""Settings: embedded defaults, overridden by ``SAFEBENCH_*`` environment variables.

Every setting has a default that works on a fresh machine with no radio and
no Pi, so ``safebench up`` needs nothing configured. On a bench, settings
come from the environment (the systemd units set them) or from
``settings.toml`` in the instance folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "SAFEBENCH"

DEFAULTS: dict[str, Any] = {
    # How long a role lasts unless the assembly renews it.
    "ROLE_TERM_DAYS": 28,
    # The longest term any grant or renewal may give, whatever anyone types: 1 to 42 days.
    "ROLE_TERM_CAP_DAYS": 28,
    # Closed mediation requests and finished aid posts are deleted this long
    # after they close: the hub keeps no history of neighbours' conflicts.
    "MEDIATION_RETENTION_DAYS": 14,
    "AID_RETENTION_DAYS": 14,
    # Closed complaints about the patrol: what was written, and whom it named, is
    # deleted this long after closing (past the next lunar audit); their dates stay.
    "COMPLAINT_RETENTION_DAYS": 30,
    # The patrol log after this many days keeps only what the audit counts:
    # each entry's kind, time and published area. What a steward wrote, who
    # it was, the place they typed and the shift it belonged to go, and
    # shifts become counts per day and area (server/domain/retention.py).
    "LOG_NOTE_RETENTION_DAYS": 30,
    # Radio traffic is kept only as long as it is useful: messages the hub
    # sent (they name stewards and places), stewards' last positions, and
    # nodes heard that are not ours.
    "OUTBOX_RETENTION_DAYS": 2,
    "POSITION_RETENTION_HOURS": 12,
    "UNKNOWN_SENDER_RETENTION_DAYS": 7,
    # Packet ids the hub acted on: a packet recorded off the air and played
    # back is recognised for this long (16 bytes each; a busy year is a few MB).
    "HEARD_PACKET_RETENTION_DAYS": 56,
    # Refused radio commands, unverified alarms and key decisions, for the
    # hosts and the assembly to review (they name handles and node ids).
    "RADIO_TRUST_RETENTION_DAYS": 56,
    # An aid post lapses after this many days unless its author says otherwise.
    "AID_DEFAULT_DAYS": 7,
    "AID_MAX_DAYS": 60,
    # The public log shows times rounded down to this many minutes, so a
    # published entry cannot be matched to the moment someone was seen.
    "PUBLIC_TIME_ROUNDING_MINUTES": 15,
    "PUBLIC_LOG_LIMIT": 100,
    "BENCH_NAME": "Safe Bench",
    # The hub's own language (en, es, ar): the radio's words, the pocket card, the posters, and
    # a page for a phone that asks for none of the shipped languages (issue 15).
    "LANGUAGE": "en",
    # The bench WiFi as the poster's QR code joins it (safebench poster). An
    # empty password is an open network, which is what lets anyone in range
    # reach the bench page without asking a steward.
    "BENCH_WIFI_SSID": "SafeBench",
    "BENCH_WIFI_PASSWORD": "",
    # The address phones on the bench WiFi open, printed on the posters.
    # 10.42.0.1 is the Pi's own address on a hotspot in NetworkManager's
    # shared mode, which is how hub_setup makes the bench WiFi.
    "BENCH_URL": "http://10.42.0.1/",
    # Empty means the Pi's own local time zone.
    "TIMEZONE": "",
    # The bench WiFi is open to anyone in range: public forms are limited per
    # address, login harder still.
    "PUBLIC_FORM_LIMIT": "20 per hour",
    "RECEIPT_LOOKUP_LIMIT": "30 per hour",
    "LOGIN_LIMIT": "5 per minute; 30 per hour",
    # And per handle, whichever phone the tries come from: a guesser who
    # changes address (a new address on the open WiFi is a minute away) gets
    # no more tries at one member's password. Only wrong passwords count, so
    # the member's own login goes through until the limit is reached.
    "LOGIN_ACCOUNT_LIMIT": "9 per hour; 30 per day",
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": False,
    # SQLite waits this long for a lock before the web layer retries.
    "DB_BUSY_TIMEOUT_MS": 5000,
    "DB_RETRY_ATTEMPTS": 3,
    # Public pages seen by anonymous visitors are rendered at most this often:
    # a crowd at the bench scanning the QR code all at once costs one render.
    "CACHE_TYPE": "SimpleCache",
    "CACHE_DEFAULT_TIMEOUT": 5,
    # The radio bridge. RADIO is serial:/dev/..., serial:auto, tcp:HOST[:PORT]
    # or sim; empty means the simulated radio, so a newcomer sees it all work.
    "RADIO": "",
    "RADIO_SEND_INTERVAL_S": 2.5,  # the firmware drops text sent faster than one per 2 s
    "RADIO_AIRTIME_BUDGET": 0.10,  # share of each rolling hour (EU 868's legal duty cycle)
    "RADIO_URGENT_RESERVE": 0.25,  # share of that budget only urgent messages may use
    # Issue 17, the mesh fallback: federation traffic on this radio (relays to neighbour benches' hubs, and
    # their alerts announced here) may use this share of the urgent reserve in all; an urgent federation
    # message the broker has not taken this many seconds after it was made goes to their hubs by radio.
    "RADIO_FEDERATION_SHARE": 0.5,
    "FEDERATION_MESH_AFTER_S": 30,
    "RADIO_ACK_TIMEOUT_S": 90,
    "RADIO_SEND_ATTEMPTS": 3,
    "RADIO_RETRY_BACKOFF_S": 30,
    "RADIO_ERROR_REPLY_MINUTES": 5,
    "RADIO_RECONNECT_MAX_S": 60,
    # No word from the radio (not even an answer to a heartbeat) this long
    # means its firmware hung with the USB port still open: reopen it.
    "RADIO_SILENCE_S": 120,
    "RADIO_CONNECT_TIMEOUT_S": 30,
    # Radio profiles (safebench radio-profile): every radio of the patrol
    # gets the same region, preset and patrol channel.
    "RADIO_REGION": "EU_868",
    "RADIO_PRESET": "LONG_FAST",
    "PATROL_CHANNEL_NAME": "SafeBench",  # at most 11 bytes, as the firmware keeps it
    # Positions on the patrol channel are cut to this many bits: 16 is a cell
    # about 730 m across (the apps say "within 364 m"): which part of the
    # neighbourhood, never which door. 32 is exact, 0 sends no position.
    "POSITION_PRECISION_BITS": 16,
    # Empty: each handheld's or relay's profile gets a Bluetooth PIN of its
    # own, printed by `safebench radio-profile`. Six digits here give every
    # radio that one PIN instead (with a warning); never 123456 or one digit six times.
    "BLUETOOTH_PIN": "",
    # Patrol traffic stays off the internet unless the assembly decides otherwise.
    "MQTT_UPLINK": False,
    # Federation over MQTT (issue 17; radio_bridge/federation_link.py, in the bridge of a bench that joined one).
    # The broker's CA certificate for an mqtts:// broker with a private CA (hub_setup's broker makes one);
    # empty: the system's CAs. The broker keeps this bench's session (what it missed) this many days.
    "FEDERATION_CA_FILE": "",
    "FEDERATION_SESSION_DAYS": 14,
    "FEDERATION_KEEPALIVE_S": 60,
    # A broker that is down is tried again after 1 s, then twice as long each time, up to this.
    "FEDERATION_RECONNECT_MAX_S": 120,
    "FEDERATION_OUTBOX_POLL_S": 0.5,
    "SIM_CHATTER_S": 90,
    # Rapid response. An alert nobody acknowledges is broadcast again after
    # this many minutes, then escalated to every steward on the channel.
    "ALERT_ACK_MINUTES": 3,
    # Resolved alerts name who was in danger where: kept this long, then deleted.
    "ALERT_RETENTION_DAYS": 7,
    # Read out in every arrest broadcast, e.g. "+49 30 1234567".
    "LEGAL_HOTLINE": "",
    # An arrest case is deleted this long after everyone is released.
    "CASE_GRACE_DAYS": 7,
    # Lone-worker safety: a steward on shift checks in this often; at
    # interval + grace they get a ping, after a second interval everyone an alert.
    "CHECK_IN_INTERVAL_MINUTES": 20,
    "CHECK_IN_GRACE_MINUTES": 5,
    # A word that, inside a check-in, silently raises an alert to dispatch.
    # Empty: none. Agree it at the assembly, never write it on the pocket card.
    "DURESS_WORD": "",  # how often a simulated steward sends something; 0 for never
    "HOST": "127.0.0.1",
    "PORT": 8080,
    # The bench WiFi's captive page (hub_setup/ turns it on with the hotspot):
    # any other address a phone asks for, and its "am I online?" probes, are
    # answered with a redirect to BENCH_URL, so joining opens the bench page.
    "CAPTIVE_PORTAL": False,
    # safebench backup: where the nightly copies go (empty: <instance>/backups)
    # and how many are kept. A copy still holds what the hub purged since, so
    # each copy kept is a night longer that purged records survive.
    "BACKUP_DIR": "",
    "BACKUP_KEEP": 7,
    # Four threads suit the Pi Zero 2 W (four cores, 512 MB): more only add memory.
    "WEB_THREADS": 4,
    # A phone keeps its connection open after a page loads (keep-alive), and
    # each open connection counts: at waitress's default of 100, a hundred
    # phones at the bench left the next one, and the hosts' live log, without
    # an answer until an idle connection timed out two minutes later
    # (tests/test_load.py). 500 stays well below the 1,024 files a process may
    # have open; idle connections are closed after 30 s, phones reopen them.
    "WEB_CONNECTIONS": 500,
    "WEB_IDLE_TIMEOUT_S": 30,
    # The open WiFi: one phone could otherwise hold all 500 by opening them
    # and sending a byte now and then (server/serving.py). A browser opens at
    # most six per site; 32 leave room for a second browser and the captive
    # page's, and hub_setup/ sets the same cap in the kernel on the bench WiFi.
    "WEB_CONNECTIONS_PER_ADDRESS": 32,
    # A request (headers and form) must arrive whole this long after its first byte.
    "WEB_REQUEST_TIMEOUT_S": 20,
    # The live log (/host/live/events) holds a waitress thread for as long as
    # it streams, so at most STREAM_SLOTS watchers hold one at a time (keep it
    # below WEB_THREADS, or watchers could starve the public pages), each for
    # at most STREAM_HOLD_S seconds before the browser reconnects. Watchers
    # beyond that get what is new and come back a second later.
    "STREAM_SLOTS": 2,
    "STREAM_HOLD_S": 25,
    # Whole-request cap: the largest form is a few kilobytes of text.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Not Secure by default: the bench WiFi serves plain HTTP (10.42.0.1 has no
    # certificate a phone would trust), and a browser never sends a Secure cookie
    # back over HTTP, so nobody could log in. A hub behind TLS sets
    # SAFEBENCH_SESSION_COOKIE_SECURE=true (the remember cookie follows it).
    "SESSION_COOKIE_SECURE": False,
    # A login's cookie lasts 12 hours from the login (a night's watch), not
    # Flask's 31 days: a copied cookie stops working by itself (web/auth.py).
    "PERMANENT_SESSION_LIFETIME": 12 * 3600,
    # The cookie is sent again only when the session changes, not on every
    # answer: a live-log watcher asks twice a second, and re-signing a cookie it
    # already holds was a tenth of each answer. The login's idle and absolute
    # limits are kept in the web process (LOCK_IDLE_MINUTES, SESSION_MAX_HOURS).
    "SESSION_REFRESH_EACH_REQUEST": False,
    # Sealed storage (server/domain/sealing.py, web/keyring.py): a login opens the
    # vaults its roles read, in memory only. They close again, and the login ends,
    # after this many minutes without a page opened, and this many hours after the
    # login whatever happens (a phone left logged in on the bench).
    "LOCK_IDLE_MINUTES": 20,
    "SESSION_MAX_HOURS": 12,
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,  # forms on a slow night may sit open for hours
    "SQLALCHEMY_TRACK_MODIFICATIONS": False,
}


def instance_path_from_env() -> Path:
    """The instance folder: ``SAFEBENCH_INSTANCE`` or ``./instance``."""
    return Path(os.environ.get(f"{ENV_PREFIX}_INSTANCE", "instance")).resolve()


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """Read a secret file, creating it first (mode 600) with ``make()`` if it does not exist yet."""
    try:
        return path.read_text()
    except FileNotFoundError:
        pass
    text = make()
    # O_EXCL: when two processes start together (the web server and the
    # worker, two commands), one writes and the other reads what it wrote.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text()
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return text


def load_secret_key(instance: Path) -> str:
    """Read the secret key, generating it on first run (never a default)."""
    import secrets  # here, not at the top: it loads OpenSSL (4 MB), and the supervisor needs none of it

    return read_or_create_secret(instance / "secret_key", lambda: secrets.token_hex(32)).strip()


def load_settings_file(instance: Path) -> dict[str, Any]:
    """Settings written by the install script or the host, if any."""
    path = instance / "settings.toml"
    if not path.exists():
        return {}
    import tomllib  # only where there is a file to read (1 MB the supervisor keeps otherwise)

    with path.open("rb") as fh:
        return {key.upper(): value for key, value in tomllib.load(fh).items()}


def default_database_uri(instance: Path) -> str:
    return f"sqlite:///{instance / 'safebench.db'}"


def with_driver(database_url: str) -> str:
    """``postgresql://...`` (as psql and pg_dump take it) through psycopg 3, the driver the
    ``[postgresql]`` extra installs; SQLAlchemy alone would look for psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url[len(scheme):]
    return database_url


def load_settings(instance: Path, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting, for the web app, the worker and the bridge alike.

    Embedded defaults, then ``settings.toml`` in the instance folder, then
    ``SAFEBENCH_*`` variables (read as JSON when they parse, as Flask's
    ``from_prefixed_env`` does, else as text), then ``overrides`` (tests).
    """
    from server.clock import utcnow

    settings: dict[str, Any] = dict(DEFAULTS)
    settings["CLOCK"] = utcnow
    settings.update(load_settings_file(instance))
    environ = os.environ if environ is None else environ
    prefix = f"{ENV_PREFIX}_"
    for name in sorted(environ):
        if not name.startswith(prefix) or name == f"{prefix}INSTANCE":
            continue
        value: Any = environ[name]
        try:
            value = json.loads(value)
        except ValueError:
            pass
        settings[name[len(prefix):]] = value
    settings.update(overrides or {})
    settings.setdefault("REMEMBER_COOKIE_SECURE", bool(settings["SESSION_COOKIE_SECURE"]))
    settings["INSTANCE"] = str(instance)
    settings["DATABASE_URL"] = with_driver(settings.get("DATABASE_URL") or default_database_uri(instance))
    settings["SQLALCHEMY_DATABASE_URI"] = settings["DATABASE_URL"]
    # Every process that loads its settings speaks the hub's language from then on (server/i18n.py):
    # the bridge's replies, the scheduler's broadcasts, the command line's cards and posters.
    from server import i18n

    settings["LANGUAGE"] = i18n.use_hub_language(str(settings.get("LANGUAGE") or ""))
    return settings

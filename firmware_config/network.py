"""What the radios of one patrol network share, and the one secret each radio keeps for itself.

The patrol channel's key (``channel.key``) is generated once per network, on
first use, and read back ever after: every profile printed from this hub
puts its radio on the same channel. The file is mode 600 and created with
``O_EXCL``, as the hub's secret key is, so two commands started together
agree on one key.

The Bluetooth pairing PIN is the radio's own: drawn afresh each time the
network is loaded for a profile (one ``safebench radio-profile``, one radio)
and kept nowhere but on the radio and with the steward who notes it, so
whoever learns one handheld's PIN can pair with that handheld only. The
``BLUETOOTH_PIN`` setting overrides this with one PIN for every radio.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radio_bridge.mesh import config_pb2
from server.config import read_or_create_secret

KEY_FILE = "channel.key"
KEY_BYTES = 32  # AES-256
# The firmware's public default key ("AQ==", one byte 0x01: anyone can read
# it) and the Bluetooth PIN every radio leaves the factory with.
DEFAULT_PSK = b"\x01"
FACTORY_PIN = 123456
# ChannelSettings.name: "less than 12 bytes" in the protobuf's own words.
MAX_CHANNEL_NAME_BYTES = 11
MAX_PRECISION_BITS = 32
# Removed from the firmware in April 2025: a radio set to it runs LONG_FAST.
RETIRED_PRESETS = {"VERY_LONG_SLOW"}

_LoRa = config_pb2.Config.LoRaConfig


class NetworkError(ValueError):
    """A setting or a stored secret that no radio profile can be built from."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PatrolNetwork:
    """The settings and secrets every radio profile of this hub is built from."""

    bench_name: str
    region: str
    preset: str
    channel_name: str
    key: bytes = field(repr=False)
    position_precision: int
    # The PIN for the radio a profile is printed for: its own, drawn by
    # load_network, unless BLUETOOTH_PIN gives every radio the same (shared_pin).
    bluetooth_pin: int = field(repr=False)
    mqtt_uplink: bool
    legal_hotline: str = ""
    shared_pin: bool = False


def load_network(config: Mapping[str, Any], instance: Path) -> PatrolNetwork:
    """The patrol network from the hub's settings, its key generated on first use, with a new radio's PIN."""
    region = _enum_setting(config, "RADIO_REGION", _LoRa.RegionCode, refused={"UNSET"})
    preset = _enum_setting(config, "RADIO_PRESET", _LoRa.ModemPreset, refused=RETIRED_PRESETS)
    channel_name = str(config["PATROL_CHANNEL_NAME"]).strip()
    if not channel_name or len(channel_name.encode()) > MAX_CHANNEL_NAME_BYTES:
        raise NetworkError(f"PATROL_CHANNEL_NAME {channel_name!r}: the firmware keeps 1 to "
                           f"{MAX_CHANNEL_NAME_BYTES} bytes.")
    precision = config["POSITION_PRECISION_BITS"]
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= MAX_PRECISION_BITS:
        raise NetworkError(f"POSITION_PRECISION_BITS {precision!r}: a whole number from 0 (no position) "
                           f"to {MAX_PRECISION_BITS} (exact); 16 is about 700 m.")
    return PatrolNetwork(
        bench_name=str(config["BENCH_NAME"]),
        region=region,
        preset=preset,
        channel_name=channel_name,
        key=load_channel_key(instance),
        position_precision=precision,
        bluetooth_pin=bluetooth_pin(config["BLUETOOTH_PIN"]),
        mqtt_uplink=_flag(config["MQTT_UPLINK"], "MQTT_UPLINK"),
        legal_hotline=str(config.get("LEGAL_HOTLINE") or ""),
        shared_pin=config["BLUETOOTH_PIN"] not in ("", None),
    )


# -- the channel key ------------------------------------------------------------


def load_channel_key(instance: Path) -> bytes:
    """The patrol channel's 32-byte key, generated on first use (never the public default)."""
    path = instance / KEY_FILE
    text = read_or_create_secret(path, lambda: _encode_key(_new_key()))
    return _decode_key(text, path)


def rotate_channel_key(instance: Path) -> bytes:
    """Replace the channel key with a fresh one; every radio needs a new profile after this."""
    path = instance / KEY_FILE
    old = path.read_text().strip() if path.exists() else ""
    key = _new_key()
    while _encode_key(key) == old:  # not in this universe, but a rotation must change the key
        key = _new_key()
    staged = path.with_name(KEY_FILE + ".new")
    staged.unlink(missing_ok=True)  # left by a rotation that died half-way
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(_encode_key(key))
        fh.flush()
        os.fsync(fh.fileno())
    # Atomic: a command reading the key meanwhile sees the old one or the new one, whole.
    os.replace(staged, path)
    return key


def _new_key() -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    return key if _usable_key(key) else _new_key()


def _usable_key(key: bytes) -> bool:
    return len(key) == KEY_BYTES and key != DEFAULT_PSK and any(key)


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii") + "\n"


def _decode_key(text: str, path: Path) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not _usable_key(key):
        raise NetworkError(f"{path} does not hold a {KEY_BYTES}-byte channel key. Run 'safebench channel "
                           "rotate' for a new one (then every radio needs a fresh profile).")
    return key


# -- the Bluetooth PIN ----------------------------------------------------------


def bluetooth_pin(configured: Any = "") -> int:
    """A new radio's own PIN; or the BLUETOOTH_PIN setting, the same for every radio, when it is set."""
    if configured not in ("", None):
        return _check_pin(configured, "BLUETOOTH_PIN")
    return new_bluetooth_pin()


def new_bluetooth_pin() -> int:
    """Six random digits, none a stranger would try first (see ``_check_pin``)."""
    while True:
        # No leading zero: the firmware keeps the PIN as a number.
        pin = 100_000 + secrets.randbelow(900_000)
        if _pin_problem(pin) is None:
            return pin


def _pin_problem(pin: int) -> str | None:
    if pin == FACTORY_PIN:
        return f"{FACTORY_PIN} is the PIN every radio leaves the factory with"
    if len(set(str(pin))) == 1:
        return f"{pin} is one digit six times, among the first a stranger tries"
    return None


def _check_pin(value: Any, where: str) -> int:
    text = str(value).strip()
    if not (len(text) == 6 and text.isascii() and text.isdigit() and text[0] != "0"):
        raise NetworkError(f"{where}: a Bluetooth PIN is six digits, not starting with 0.")
    problem = _pin_problem(int(text))
    if problem:
        raise NetworkError(f"{where}: {problem}; choose another.")
    return int(text)


# -- helpers --------------------------------------------------------------------


def _enum_setting(config: Mapping[str, Any], name: str, enum: Any, refused: set[str]) -> str:
    value = str(config[name]).strip().upper()
    known = [key for key in enum.DESCRIPTOR.values_by_name if key not in refused]
    if value not in known:
        raise NetworkError(f"{name} {config[name]!r} is not one the firmware knows; use one of: {', '.join(known)}.")
    return value


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"", "0", "false", "no", "off"}:
        return False
    raise NetworkError(f"{name} {value!r}: true or false.")

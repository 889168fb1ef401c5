"""What every radio of one patrol network shares: the settings, and two secrets kept in the instance folder.

The patrol channel's key (``channel.key``) and the Bluetooth pairing PIN
(``bluetooth_pin``) are generated once per network, on first use, and read
back ever after: every profile printed from this hub puts its radio on the
same channel. Both files are mode 600 and created with ``O_EXCL``, as the
hub's secret key is, so two commands started together agree on one secret.
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
PIN_FILE = "bluetooth_pin"
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
    bluetooth_pin: int = field(repr=False)
    mqtt_uplink: bool
    legal_hotline: str = ""


def load_network(config: Mapping[str, Any], instance: Path) -> PatrolNetwork:
    """The patrol network from the hub's settings, generating its secrets on first use."""
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
        bluetooth_pin=load_bluetooth_pin(instance, config["BLUETOOTH_PIN"]),
        mqtt_uplink=_flag(config["MQTT_UPLINK"], "MQTT_UPLINK"),
        legal_hotline=str(config.get("LEGAL_HOTLINE") or ""),
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


def load_bluetooth_pin(instance: Path, configured: Any = "") -> int:
    """The BLUETOOTH_PIN setting, or the network's own, generated once into the instance folder."""
    if configured not in ("", None):
        return _check_pin(configured, "BLUETOOTH_PIN")
    path = instance / PIN_FILE
    return _check_pin(read_or_create_secret(path, lambda: f"{_new_pin()}\n"), str(path))


def _new_pin() -> int:
    # Six digits with no leading zero: the firmware keeps the PIN as a number.
    pin = 100_000 + secrets.randbelow(900_000)
    return pin if pin != FACTORY_PIN else _new_pin()


def _check_pin(value: Any, where: str) -> int:
    text = str(value).strip()
    if not (len(text) == 6 and text.isascii() and text.isdigit() and text[0] != "0"):
        raise NetworkError(f"{where}: a Bluetooth PIN is six digits, not starting with 0.")
    if int(text) == FACTORY_PIN:
        raise NetworkError(f"{where}: {FACTORY_PIN} is the PIN every radio leaves the factory with; choose another.")
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

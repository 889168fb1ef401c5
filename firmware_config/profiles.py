"""Radio profiles: what ``meshtastic --configure`` sets on the hub's radio, a handheld or a relay.

``build_profile`` is pure: it returns the profile as a dict in the YAML
shape the official command reads (``owner``, ``owner_short``,
``channel_url``, ``canned_messages``, ``config:``, ``module_config:``, enum
values by name). Fields a profile does not name keep the radio's own values:
the command starts each section from what the radio has.

The roles, and why:

- hub: ``CLIENT_MUTE``. It never relays others' packets, so its duty cycle
  (10 % an hour in EU 868, counted per radio) stays for the hub's own
  alerts, which is what the bridge's airtime ledger assumes. Relaying is
  the relays' job. Bluetooth is off: the radio talks to the Pi over USB.
- steward: ``CLIENT``, canned messages for a thumb wheel, and the bell
  buzzing on urgent broadcasts.
- relay: ``ROUTER``, only on a high, fixed spot (``RELAY_WARNING``).

A steward's or a relay's profile pairs a phone by the Bluetooth PIN the
network was loaded with: one of the radio's own (network.py), so two
profiles never share one unless ``BLUETOOTH_PIN`` says so (``SHARED_PIN_WARNING``).
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from firmware_config.channel import channel_url, lora_config
from firmware_config.network import NetworkError, PatrolNetwork
from server.domain.radio_commands import Verb, canned_messages

KINDS = ("hub", "steward", "relay")
ROLES = {"hub": "CLIENT_MUTE", "steward": "CLIENT", "relay": "ROUTER"}
DEFAULT_SHORT_NAMES = {"hub": "HUB", "steward": "STWD", "relay": "RLY"}
MAX_LONG_NAME_BYTES = 39
MAX_SHORT_NAME_BYTES = 4
MAX_CANNED_CHARS = 200
BELL = "\a"
# The canned messages module's own send_bell would ring on every preset, so a
# CI every 20 minutes would buzz every handheld in range: the bell goes
# inside the urgent presets instead, and the firmware sends it as typed.
URGENT_PRESETS = {Verb.SOS.value, Verb.ARREST.value}

SHARED_PIN_WARNING = (
    "BLUETOOTH_PIN is set, so this radio gets the same Bluetooth PIN as every other radio printed from this hub: "
    "whoever learns one can pair with them all. Leave BLUETOOTH_PIN empty for a PIN of each radio's own."
)

log = logging.getLogger(__name__)

RELAY_WARNING = (
    "A relay is a ROUTER: it re-broadcasts every packet it hears, ahead of the other radios, and never sleeps. "
    "Put one only on a high, fixed spot with a clear view over the patrol area (a roof, a mast), on mains or "
    "solar power, and no more than one or two for a neighbourhood: each extra router sends every packet once "
    "more, floods the mesh and spends the airtime an SOS needs. A radio in a window, a car or a pocket takes "
    "the steward profile instead."
)

# Stewards' positions: a regular broadcast, and a "smart" one when they have
# moved, but not more often than every 5 minutes or 250 m (a walking
# patrol would otherwise send one every minute or so, all on the air).
_POSITION = {
    "steward": {
        "position_broadcast_secs": 900,
        "position_broadcast_smart_enabled": True,
        "broadcast_smart_minimum_distance": 250,
        "broadcast_smart_minimum_interval_secs": 300,
    },
    "hub": {"position_broadcast_secs": 3600, "position_broadcast_smart_enabled": False},
    "relay": {"position_broadcast_secs": 3600, "position_broadcast_smart_enabled": False},
}
_LORA_FIELDS = ("region", "modem_preset", "use_preset", "hop_limit", "tx_enabled", "ignore_mqtt",
                "config_ok_to_mqtt")


def build_profile(kind: str, net: PatrolNetwork, *, name: str | None = None,
                  short_name: str | None = None) -> dict[str, Any]:
    """The profile for one radio of the patrol, as ``meshtastic --configure`` reads it."""
    if kind not in KINDS:
        raise NetworkError(f"No profile {kind!r}: one of {', '.join(KINDS)}.")
    long_name, short = owner_names(kind, net, name, short_name)
    profile: dict[str, Any] = {
        "owner": long_name,
        "owner_short": short,
        "channel_url": channel_url(net),
    }
    if kind == "steward":
        profile["canned_messages"] = canned_message_text()
    profile |= {
        "config": {
            "device": {"role": ROLES[kind]},
            "lora": _fields(lora_config(net), _LORA_FIELDS),
            "position": dict(_POSITION[kind]),
            "bluetooth": _bluetooth(kind, net),
        },
        "module_config": {},
    }
    if kind == "hub":
        # The bridge speaks the serial API; a profile must never turn it off.
        profile["config"]["security"] = {"serial_enabled": True}
    if kind == "steward":
        profile["module_config"]["canned_message"] = {"enabled": True, "send_bell": False}
        # A received bell buzzes, vibrates and blinks, even with the screen off:
        # the hub's SOS and arrest broadcasts carry one. Boards without a
        # buzzer or motor just blink, or do nothing.
        profile["module_config"]["external_notification"] = {
            "enabled": True,
            "alert_bell": True,
            "alert_bell_buzzer": True,
            "alert_bell_vibra": True,
            "use_pwm": True,
        }
    if not net.mqtt_uplink:
        profile["module_config"]["mqtt"] = {"enabled": False}
    if not profile["module_config"]:
        del profile["module_config"]
    return profile


def canned_message_text() -> str:
    """The handheld's presets from the steward vocabulary, the urgent ones carrying the bell."""
    presets = [f"{text}{BELL}" if text in URGENT_PRESETS else text for text in canned_messages()]
    text = "|".join(presets)
    if len(text) > MAX_CANNED_CHARS:
        raise NetworkError(f"The canned messages take {len(text)} characters; the module keeps {MAX_CANNED_CHARS}.")
    return text


def owner_names(kind: str, net: PatrolNetwork, name: str | None, short_name: str | None) -> tuple[str, str]:
    """The radio's long and short names: NAME as given, else the bench's name and the kind."""
    if name is not None:
        long_name = name.strip()
        if not long_name or len(long_name.encode()) > MAX_LONG_NAME_BYTES:
            raise NetworkError(f"--name {name!r}: 1 to {MAX_LONG_NAME_BYTES} bytes.")
    else:
        long_name = _cut(f"{net.bench_name} {kind}", MAX_LONG_NAME_BYTES)
    if short_name is not None:
        short = short_name.strip()
        if not short or len(short.encode()) > MAX_SHORT_NAME_BYTES:
            raise NetworkError(f"--short {short_name!r}: 1 to {MAX_SHORT_NAME_BYTES} bytes (letters, digits, "
                               "or one emoji).")
    else:
        short = _short_from(name) if name is not None else DEFAULT_SHORT_NAMES[kind]
        short = short or DEFAULT_SHORT_NAMES[kind]
    return long_name, short


def profile_yaml(kind: str, profile: dict[str, Any], file_name: str | None = None) -> str:
    """The profile as a YAML file, with a header saying how to apply it and that it holds the key."""
    target = file_name or f"{kind}.yaml"
    header = (
        f"# Safe Bench radio profile: {kind} ({ROLES[kind]}) for {profile['owner']}\n"
        f"# Apply with: meshtastic --port /dev/ttyUSB0 --configure {target}\n"
        "# It holds the patrol channel's key and the radio's Bluetooth PIN: keep it like a password,\n"
        "# delete it once applied.\n"
    )
    return header + yaml.safe_dump(profile, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _bluetooth(kind: str, net: PatrolNetwork) -> dict[str, Any]:
    if kind == "hub":
        return {"enabled": False}
    if net.shared_pin:
        # Logged, not printed: the command line shows it on standard error, as a plain line.
        log.warning(SHARED_PIN_WARNING)
    return {"enabled": True, "mode": "FIXED_PIN", "fixed_pin": net.bluetooth_pin}


def _fields(message: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Named fields of a protobuf message, enums by name, false and zero values included."""
    out: dict[str, Any] = {}
    for name in names:
        descriptor = message.DESCRIPTOR.fields_by_name[name]
        value = getattr(message, name)
        out[name] = descriptor.enum_type.values_by_number[value].name if descriptor.enum_type else value
    return out


def _short_from(name: str) -> str:
    words = ["".join(ch for ch in word if ch.isalnum()) for word in name.split()]
    words = [word for word in words if word]
    if len(words) > 1:
        return _cut("".join(word[0] for word in words).upper(), MAX_SHORT_NAME_BYTES)
    return _cut(words[0].upper(), MAX_SHORT_NAME_BYTES) if words else ""


def _cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    return text.encode()[:max_bytes].decode(errors="ignore").strip()

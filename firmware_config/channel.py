"""The patrol channel as the firmware and the Meshtastic apps see it, and its share URL.

The URL is the one the apps scan from a QR code: ``https://meshtastic.org/e/#``
and the URL-safe base64, without padding, of an ``apponly.ChannelSet``: the
channel's settings and the LoRa config. The key is inside it, so whoever has
the URL can read the patrol.
"""

from __future__ import annotations

import base64
import binascii

from google.protobuf.message import DecodeError

from firmware_config.network import NetworkError, PatrolNetwork
from radio_bridge.mesh import apponly_pb2, channel_pb2, config_pb2

URL_PREFIX = "https://meshtastic.org/e/#"
# The firmware's default; each hop re-transmits, so more would spend airtime.
HOP_LIMIT = 3

_LoRa = config_pb2.Config.LoRaConfig


def channel_settings(net: PatrolNetwork) -> channel_pb2.ChannelSettings:
    """The patrol channel: its own key, positions cut to the network's precision, MQTT only if asked."""
    return channel_pb2.ChannelSettings(
        name=net.channel_name,
        psk=net.key,
        uplink_enabled=net.mqtt_uplink,
        downlink_enabled=net.mqtt_uplink,
        module_settings=channel_pb2.ModuleSettings(position_precision=net.position_precision),
    )


def lora_config(net: PatrolNetwork) -> config_pb2.Config.LoRaConfig:
    """The whole LoRa config a radio on the patrol runs.

    Whole, because an app that scans the URL replaces the radio's LoRa config
    with this one: a missing ``tx_enabled`` would leave the radio silent.
    """
    return _LoRa(
        use_preset=True,
        region=_LoRa.RegionCode.Value(net.region),
        modem_preset=_LoRa.ModemPreset.Value(net.preset),
        hop_limit=HOP_LIMIT,
        tx_enabled=True,
        sx126x_rx_boosted_gain=True,
        # Packets that crossed the internet are not patrol traffic, unless the network federates.
        ignore_mqtt=not net.mqtt_uplink,
        config_ok_to_mqtt=net.mqtt_uplink,
    )


def channel_set(net: PatrolNetwork) -> apponly_pb2.ChannelSet:
    return apponly_pb2.ChannelSet(settings=[channel_settings(net)], lora_config=lora_config(net))


def channel_url(net: PatrolNetwork) -> str:
    """The share URL of the patrol channel, as the Meshtastic apps and ``meshtastic --seturl`` read it."""
    encoded = base64.urlsafe_b64encode(channel_set(net).SerializeToString()).decode("ascii")
    return URL_PREFIX + encoded.rstrip("=")


def parse_channel_url(url: str) -> apponly_pb2.ChannelSet:
    """The channel set inside a share URL; raises ``NetworkError`` for anything else."""
    prefix, sep, encoded = url.strip().partition("/#")
    if not sep or not prefix.startswith("https://meshtastic.org/"):
        raise NetworkError(f"Not a Meshtastic channel URL: {url!r}")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        channels = apponly_pb2.ChannelSet.FromString(raw)
    except (binascii.Error, ValueError, DecodeError) as error:
        raise NetworkError(f"The channel URL does not decode: {error}") from None
    if not channels.settings:
        raise NetworkError("The channel URL holds no channel.")
    return channels

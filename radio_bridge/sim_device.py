"""What the simulated radio knows: its owner, config, channels and node DB.

``DeviceState`` builds the handshake a real radio sends after
``want_config_id`` and applies the ``AdminMessage``s a client (the bridge, or
``meshtastic --configure``) sends to the local node, answering the getters
the way the firmware's AdminModule does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

from radio_bridge.mesh import (
    admin_pb2,
    channel_pb2,
    config_pb2,
    mesh_pb2,
    module_config_pb2,
)

logger = logging.getLogger(__name__)

BROADCAST_NUM = 0xFFFFFFFF
MAX_CHANNELS = 8
# want_config_id nonces with a special meaning to the firmware.
NONCE_ONLY_CONFIG = 69420  # the library's noNodes=True: no other nodes' node_info
NONCE_ONLY_NODES = 69421  # only node infos, then config_complete_id

CONFIG_SECTIONS = [f.name for f in config_pb2.Config.DESCRIPTOR.oneofs_by_name["payload_variant"].fields]
MODULE_SECTIONS = [f.name for f in module_config_pb2.ModuleConfig.DESCRIPTOR.oneofs_by_name["payload_variant"].fields]


def config_section_for(config_type: int) -> str | None:
    """``AdminMessage.ConfigType`` value to ``Config`` field name (the field number is the value + 1)."""
    fields = config_pb2.Config.DESCRIPTOR.fields_by_number
    found = fields.get(config_type + 1)
    return found.name if found is not None else None


def module_section_for(module_type: int) -> str | None:
    """``AdminMessage.ModuleConfigType`` value to ``ModuleConfig`` field name."""
    found = module_config_pb2.ModuleConfig.DESCRIPTOR.fields_by_number.get(module_type + 1)
    return found.name if found is not None else None


@dataclass
class SimNode:
    """Another node on the simulated mesh, e.g. a steward's handheld."""

    num: int
    long_name: str
    short_name: str
    hw_model: str = "TBEAM"
    role: str = "CLIENT"
    latitude: float | None = None
    longitude: float | None = None
    snr: float = 6.0
    rssi: int = -71
    hops_away: int = 0
    last_heard: float | None = None  # unix time; None: heard when the radio booted
    is_favorite: bool = False
    is_ignored: bool = False
    public_key: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def node_id(self) -> str:
        return f"!{self.num:08x}"

    def to_user(self) -> mesh_pb2.User:
        return mesh_pb2.User(
            id=self.node_id,
            long_name=self.long_name,
            short_name=self.short_name,
            macaddr=mac_for(self.num),
            hw_model=mesh_pb2.HardwareModel.Value(self.hw_model),
            role=config_pb2.Config.DeviceConfig.Role.Value(self.role),
            public_key=self.public_key,
        )

    def to_node_info(self, now: float) -> mesh_pb2.NodeInfo:
        info = mesh_pb2.NodeInfo(
            num=self.num,
            user=self.to_user(),
            snr=self.snr,
            last_heard=int(self.last_heard if self.last_heard is not None else now),
            hops_away=self.hops_away,
            is_favorite=self.is_favorite,
            is_ignored=self.is_ignored,
        )
        if self.latitude is not None and self.longitude is not None:
            info.position.CopyFrom(position_message(self.latitude, self.longitude, when=info.last_heard))
        return info


def demo_nodes() -> list[SimNode]:
    """Three simulated stewards for the quickstart, labelled as simulated.

    Their keys stay the same from one start to the next, as a real radio's
    do, so the key pinned for them at the first start still holds after a restart.
    """
    return [
        SimNode(0x5AFE0A51, "Ash (sim)", "ASH", latitude=52.0921, longitude=5.1214, public_key=_demo_key(0x5AFE0A51)),
        SimNode(0x5AFE0B12, "Birch (sim)", "BRCH", latitude=52.0907, longitude=5.1190, hops_away=1, snr=-3.5,
                public_key=_demo_key(0x5AFE0B12)),
        SimNode(0x5AFE0CED, "Cedar (sim)", "CEDR", hw_model="HELTEC_V3", snr=9.25, public_key=_demo_key(0x5AFE0CED)),
    ]


def _demo_key(num: int) -> bytes:
    return hashlib.sha256(b"safe bench simulated steward %d" % num).digest()


def mac_for(num: int) -> bytes:
    """The firmware derives the node number from the last 4 bytes of the MAC."""
    return b"\x5a\xfe" + num.to_bytes(4, "big")


def position_message(lat: float, lon: float, *, altitude: int | None = None, when: float | None = None,
                     precision_bits: int = 32) -> mesh_pb2.Position:
    pos = mesh_pb2.Position(
        latitude_i=round(lat * 1e7),
        longitude_i=round(lon * 1e7),
        time=int(when if when is not None else time.time()),
        precision_bits=precision_bits,
    )
    if altitude is not None:
        pos.altitude = altitude
    return pos


def _section(message_cls, name: str, **values):
    """A Config/ModuleConfig with just the ``name`` section set."""
    msg = message_cls()
    sub = getattr(msg, name)
    sub.SetInParent()
    for key, value in values.items():
        setattr(sub, key, value)
    return msg


class DeviceState:
    """Owner, configuration, channels and node DB of the simulated radio."""

    def __init__(self, *, node_num: int, long_name: str, short_name: str, region: str, modem_preset: str,
                 channel_name: str, psk: bytes, nodes: list[SimNode], firmware_version: str,
                 hw_model: str) -> None:
        self.node_num = node_num
        self.firmware_version = firmware_version
        self.owner = mesh_pb2.User(
            id=f"!{node_num:08x}",
            long_name=long_name,
            short_name=short_name,
            macaddr=mac_for(node_num),
            hw_model=mesh_pb2.HardwareModel.Value(hw_model),
            role=config_pb2.Config.DeviceConfig.Role.CLIENT,
            public_key=os.urandom(32),
        )
        self.device_id = os.urandom(16)
        self.session_passkey = os.urandom(8)
        self.config = self._default_config(region, modem_preset)
        self.module_config = {name: _section(module_config_pb2.ModuleConfig, name) for name in MODULE_SECTIONS}
        self.channels = self._default_channels(channel_name, psk)
        self.canned_messages = ""
        self.ringtone = ""
        self.nodes: dict[int, SimNode] = {n.num: n for n in nodes}
        self.fixed_position: mesh_pb2.Position | None = None
        self.in_edit_transaction = False
        self.commits = 0
        self.time_set: int | None = None
        self.reboot_count = 0  # the firmware counts its boots; a client can tell a restarted radio by it
        self.booted_at = time.time()

    def _default_config(self, region: str, modem_preset: str) -> dict[str, config_pb2.Config]:
        Config = config_pb2.Config
        config = {name: _section(Config, name) for name in CONFIG_SECTIONS}
        config["device"] = _section(Config, "device", role=Config.DeviceConfig.Role.CLIENT,
                                    node_info_broadcast_secs=10800)
        config["position"] = _section(Config, "position", position_broadcast_secs=900,
                                      gps_mode=Config.PositionConfig.GpsMode.NOT_PRESENT)
        config["display"] = _section(Config, "display", screen_on_secs=60)
        config["lora"] = _section(
            Config, "lora",
            use_preset=True,
            modem_preset=Config.LoRaConfig.ModemPreset.Value(modem_preset),
            region=Config.LoRaConfig.RegionCode.Value(region),
            hop_limit=3,
            tx_enabled=True,
            sx126x_rx_boosted_gain=True,
        )
        config["bluetooth"] = _section(Config, "bluetooth", enabled=True,
                                       mode=Config.BluetoothConfig.PairingMode.RANDOM_PIN)
        config["security"] = _section(Config, "security", public_key=self.owner.public_key, serial_enabled=True)
        return config

    @staticmethod
    def _default_channels(name: str, psk: bytes) -> list[channel_pb2.Channel]:
        channels = [
            channel_pb2.Channel(index=0, role=channel_pb2.Channel.Role.PRIMARY,
                                settings=channel_pb2.ChannelSettings(name=name, psk=psk))
        ]
        channels += [channel_pb2.Channel(index=i, role=channel_pb2.Channel.Role.DISABLED)
                     for i in range(1, MAX_CHANNELS)]
        return channels

    # -- what the host sees --------------------------------------------------

    @property
    def lora(self) -> config_pb2.Config.LoRaConfig:
        return self.config["lora"].lora

    def own_node_info(self, now: float) -> mesh_pb2.NodeInfo:
        info = mesh_pb2.NodeInfo(num=self.node_num, user=self.owner, last_heard=int(now), is_favorite=True)
        if self.fixed_position is not None:
            info.position.CopyFrom(self.fixed_position)
        return info

    def metadata(self) -> mesh_pb2.DeviceMetadata:
        return mesh_pb2.DeviceMetadata(
            firmware_version=self.firmware_version,
            device_state_version=24,
            canShutdown=True,
            hasBluetooth=True,
            role=self.config["device"].device.role,
            position_flags=self.config["position"].position.position_flags,
            hw_model=self.owner.hw_model,
            hasPKC=True,
        )

    def handshake(self, nonce: int, now: float) -> list[mesh_pb2.FromRadio]:
        """The FromRadio messages a radio sends for ``want_config_id``, in the firmware's order."""
        out: list[mesh_pb2.FromRadio] = []
        if nonce != NONCE_ONLY_NODES:
            out.append(mesh_pb2.FromRadio(my_info=mesh_pb2.MyNodeInfo(
                my_node_num=self.node_num, min_app_version=30200, device_id=self.device_id,
                pio_env="native-sim", nodedb_count=len(self.nodes) + 1, reboot_count=self.reboot_count)))
        out.append(mesh_pb2.FromRadio(node_info=self.own_node_info(now)))
        if nonce != NONCE_ONLY_NODES:
            out.append(mesh_pb2.FromRadio(metadata=self.metadata()))
            out += [mesh_pb2.FromRadio(channel=ch) for ch in self.channels]
            out += [mesh_pb2.FromRadio(config=self.config[name]) for name in CONFIG_SECTIONS]
            out += [mesh_pb2.FromRadio(moduleConfig=self.module_config[name]) for name in MODULE_SECTIONS]
        if nonce != NONCE_ONLY_CONFIG:
            out += [mesh_pb2.FromRadio(node_info=node.to_node_info(self.booted_at)) for node in self.nodes.values()]
        out.append(mesh_pb2.FromRadio(config_complete_id=nonce))
        return out

    # -- admin messages to the local node ------------------------------------

    def apply_admin(self, msg: admin_pb2.AdminMessage) -> tuple[admin_pb2.AdminMessage | None, str]:
        """Apply one admin message; return (the reply, if it asks for one; routing error name)."""
        kind = msg.WhichOneof("payload_variant")
        reply = admin_pb2.AdminMessage()
        if kind is None:
            return None, "NONE"

        if kind == "get_owner_request":
            reply.get_owner_response.CopyFrom(self.owner)
        elif kind == "get_config_request":
            name = config_section_for(msg.get_config_request)
            if name is None:
                return None, "BAD_REQUEST"
            reply.get_config_response.CopyFrom(self.config[name])
        elif kind == "get_module_config_request":
            name = module_section_for(msg.get_module_config_request)
            if name is None:
                return None, "BAD_REQUEST"
            reply.get_module_config_response.CopyFrom(self.module_config[name])
        elif kind == "get_channel_request":
            index = msg.get_channel_request - 1
            if not 0 <= index < MAX_CHANNELS:
                return None, "BAD_REQUEST"
            reply.get_channel_response.CopyFrom(self.channels[index])
        elif kind == "get_canned_message_module_messages_request":
            reply.get_canned_message_module_messages_response = self.canned_messages
        elif kind == "get_ringtone_request":
            reply.get_ringtone_response = self.ringtone
        elif kind == "get_device_metadata_request":
            reply.get_device_metadata_response.CopyFrom(self.metadata())
        else:
            return None, self._apply_setter(kind, msg)

        reply.session_passkey = self.session_passkey
        return reply, "NONE"

    def _apply_setter(self, kind: str, msg: admin_pb2.AdminMessage) -> str:
        if kind == "set_owner":
            # The firmware keeps a name that arrives empty or blank.
            if msg.set_owner.long_name.strip():
                self.owner.long_name = msg.set_owner.long_name
            if msg.set_owner.short_name.strip():
                self.owner.short_name = msg.set_owner.short_name[:4]
            self.owner.is_licensed = msg.set_owner.is_licensed
            if msg.set_owner.HasField("is_unmessagable"):
                self.owner.is_unmessagable = msg.set_owner.is_unmessagable
        elif kind == "set_config":
            name = msg.set_config.WhichOneof("payload_variant")
            if name is None:
                return "BAD_REQUEST"
            self.config[name] = config_pb2.Config()
            self.config[name].CopyFrom(msg.set_config)
            if name == "device":
                self.owner.role = msg.set_config.device.role
        elif kind == "set_module_config":
            name = msg.set_module_config.WhichOneof("payload_variant")
            if name is None:
                return "BAD_REQUEST"
            self.module_config[name] = module_config_pb2.ModuleConfig()
            self.module_config[name].CopyFrom(msg.set_module_config)
        elif kind == "set_channel":
            index = msg.set_channel.index
            if not 0 <= index < MAX_CHANNELS:
                return "BAD_REQUEST"
            self.channels[index] = channel_pb2.Channel()
            self.channels[index].CopyFrom(msg.set_channel)
        elif kind == "set_canned_message_module_messages":
            self.canned_messages = msg.set_canned_message_module_messages
        elif kind == "set_ringtone_message":
            self.ringtone = msg.set_ringtone_message
        elif kind == "begin_edit_settings":
            self.in_edit_transaction = True
        elif kind == "commit_edit_settings":
            self.in_edit_transaction = False
            self.commits += 1
        elif kind == "set_fixed_position":
            self.fixed_position = mesh_pb2.Position()
            self.fixed_position.CopyFrom(msg.set_fixed_position)
            self.config["position"].position.fixed_position = True
        elif kind == "remove_fixed_position":
            self.fixed_position = None
            self.config["position"].position.fixed_position = False
        elif kind == "set_time_only":
            self.time_set = msg.set_time_only
        elif kind in ("set_favorite_node", "remove_favorite_node", "set_ignored_node", "remove_ignored_node"):
            node = self.nodes.get(getattr(msg, kind))
            if node is not None:
                flag = "is_favorite" if "favorite" in kind else "is_ignored"
                setattr(node, flag, kind.startswith("set_"))
        elif kind == "add_contact":
            # A contact shared by QR code or by the host (firmware 2.6+): into the node list, key and all.
            contact = msg.add_contact
            if not contact.node_num or len(contact.user.public_key) != 32:
                return "BAD_REQUEST"
            known = self.nodes.get(contact.node_num)
            if known is not None:
                known.public_key = bytes(contact.user.public_key)
            else:
                self.nodes[contact.node_num] = SimNode(
                    contact.node_num, contact.user.long_name or f"!{contact.node_num:08x}",
                    contact.user.short_name or f"{contact.node_num & 0xFFFF:04x}",
                    public_key=bytes(contact.user.public_key))
        elif kind == "remove_by_nodenum":
            self.nodes.pop(msg.remove_by_nodenum, None)
        else:
            # reboot, shutdown, factory resets, OTA...: recorded by the caller, not acted out.
            logger.info("simulated radio: admin %s recorded but not simulated", kind)
        return "NONE"

"""The one boundary to the ``meshtastic`` library and its pubsub events.

Everything that touches the library lives here: opening and closing the
radio, turning its camelCase packet dicts into the project's own types, and
sending. The protobuf message classes are re-exported for the simulated
radio, which must speak the same wire protocol.
"""

from __future__ import annotations

from meshtastic.protobuf import (  # noqa: F401  (re-exported for the simulator)
    admin_pb2,
    apponly_pb2,
    channel_pb2,
    config_pb2,
    mesh_pb2,
    module_config_pb2,
    portnums_pb2,
)

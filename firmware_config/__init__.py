"""Radio profiles for the patrol: the hub's radio, stewards' handhelds and relays.

- ``network``: the settings every radio of the patrol shares, and the two
  secrets kept in the instance folder (the channel key and the Bluetooth PIN).
- ``channel``: the patrol channel as the firmware and the apps see it, and its
  share URL (``https://meshtastic.org/e/#...``).
- ``profiles``: YAML profiles that ``meshtastic --configure`` applies.
- ``qr``: QR codes as SVG and PNG; ``pocket_card``: the steward's printed card.

Nothing here talks to a radio: the official ``meshtastic`` command applies a
profile, and the protobuf classes come from ``radio_bridge.mesh``, the one
module that imports the library.
"""

"""The radio bridge: steward check-ins in, alerts out, over a Meshtastic LoRa radio.

Only ``radio_bridge.mesh`` imports the ``meshtastic`` library; everything
else works with the project's own types.
"""

"""Printed material for the bench: the bench poster and the compact poster.

Flask-free: the ``safebench poster`` and ``safebench compact-poster``
commands pass in the settings and the compact's text.

- ``wifi``: the payload of the QR code that joins the bench WiFi.
- ``posters``: each poster as a standalone HTML page with its print
  stylesheet inside, and the QR codes printed on it.
- ``chromium``: PDF and PNG of a poster, rendered by Debian's headless chromium.

The QR codes themselves come from ``firmware_config.qr``, which the steward
pocket card uses too.
"""

"""The payload of a QR code that joins a WiFi network, as phone cameras read it.

The format is ZXing's, which Android's and iOS's cameras both follow:
``WIFI:T:WPA;S:<ssid>;P:<password>;;``. In the SSID and the password a
backslash, ``;``, ``,``, ``:`` and ``"`` are escaped with a backslash, or a
network called ``Bench;7`` would end its name at the semicolon.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r'([\\;,:"])')


def escape_wifi(text: str) -> str:
    r"""``text`` with ``\``, ``;``, ``,``, ``:`` and ``"`` escaped by a backslash."""
    return _SPECIAL.sub(r"\\\1", text)


def wifi_payload(ssid: str, password: str) -> str:
    """The QR payload that joins ``ssid``: WPA with ``password``, or an open network when it is empty."""
    if not ssid:
        raise ValueError("A WiFi network needs a name (SSID).")
    if not password:
        return f"WIFI:T:nopass;S:{escape_wifi(ssid)};;"
    return f"WIFI:T:WPA;S:{escape_wifi(ssid)};P:{escape_wifi(password)};;"

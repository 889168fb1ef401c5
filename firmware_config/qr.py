"""QR codes as SVG (for print, and inline in HTML) and PNG (for screens), without Pillow."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.pure
import qrcode.image.svg

# M recovers about 15 % of a damaged code: enough for a card kept in a
# pocket, and the code stays small enough for a phone to read from 3 cm.
ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M


def _code(text: str, box_size: int = 10) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECTION, box_size=box_size, border=4)
    code.add_data(text)
    code.make(fit=True)
    return code


def qr_png(text: str) -> bytes:
    """A PNG of the QR code, ten pixels a module, with the quiet zone around it."""
    buffer = io.BytesIO()
    _code(text).make_image(image_factory=qrcode.image.pure.PyPNGImage).save(buffer)
    return buffer.getvalue()


def qr_svg(text: str) -> str:
    """A standalone SVG document of the QR code: one path on a white square, scaled by its viewBox."""
    buffer = io.BytesIO()
    _code(text).make_image(image_factory=qrcode.image.svg.SvgPathFillImage).save(buffer)
    return buffer.getvalue().decode("utf-8")


def qr_svg_inline(text: str, label: str) -> str:
    """The QR code as an ``<svg>`` element for an HTML page (no XML declaration), labelled for screen readers."""
    svg = qr_svg(text)
    svg = svg[svg.index("<svg"):]
    return svg.replace("<svg", f'<svg role="img" aria-label="{_attr(label)}"', 1)


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")

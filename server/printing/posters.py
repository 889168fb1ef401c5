"""The bench poster and the compact poster: standalone HTML pages and the QR codes on them.

Each poster is one HTML file with its print stylesheet inside (A4 portrait),
its QR codes inline as SVG, so it prints from any browser with nothing else
beside it; the same codes are also written as PNG files. Posters show
process, never people: what the bench is for and how to reach its page, no
names and no phone numbers but the legal hotline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jinja2 import Environment, FileSystemLoader, select_autoescape

from server import i18n
from markupsafe import Markup

from firmware_config.qr import qr_png, qr_svg_inline
from server.printing.wifi import wifi_payload

# The posters' templates sit with the hub's pages, so the compact poster
# lays out the compact's text exactly as the compact page does.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class BenchWifi:
    """The bench WiFi as phones see it: an empty password is an open network."""

    ssid: str
    password: str

    @property
    def payload(self) -> str:
        return wifi_payload(self.ssid, self.password)


@dataclass(frozen=True)
class QrCode:
    """A QR code printed on a poster, also written on its own as ``<poster>-<name>.png``."""

    name: str
    payload: str
    label: str  # what it does, for screen readers and for the host at the terminal

    @property
    def svg(self) -> Markup:
        # qr_svg_inline builds the element itself and escapes its one attribute.
        return Markup(qr_svg_inline(self.payload, f"QR code: {self.label}"))


@dataclass(frozen=True)
class Poster:
    name: str  # the stem of its files: <name>.html, .pdf, .png
    html: str
    codes: tuple[QrCode, ...]

    def write(self, folder: Path) -> tuple[Path, list[Path]]:
        """Write the HTML page and each QR code as PNG into ``folder``; return their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        page = folder / f"{self.name}.html"
        page.write_text(self.html, encoding="utf-8")
        pngs = []
        for code in self.codes:
            path = folder / f"{self.name}-{code.name}.png"
            path.write_bytes(qr_png(code.payload))
            pngs.append(path)
        return page, pngs


def page_url(bench_url: str, path: str) -> str:
    """The address of a hub page (``/compact``) under the bench's address, which may have a path of its own."""
    base = bench_url if bench_url.endswith("/") else bench_url + "/"
    return urljoin(base, path.lstrip("/"))


def _environment() -> Environment:
    # Printed in the hub's language (a poster speaks to the whole street): the caller renders inside
    # i18n.speaking(None), see bench_poster and compact_poster.
    return i18n.teach(Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"])))


def bench_poster(*, bench_name: str, wifi: BenchWifi, bench_url: str, legal_hotline: str,
                 printed_on: date, allies: Sequence[Any] = ()) -> Poster:
    """The poster on the bench: join the WiFi, open the bench page, the address in plain text, and the allies.

    ``allies``: the vows in force (server.domain.allies.card_vows), a short list: organisations only.
    """
    with i18n.speaking(None):
        join = QrCode("wifi-qr", wifi.payload, i18n.gettext("join the WiFi %(ssid)s", ssid=wifi.ssid))
        open_page = QrCode("bench-page-qr", bench_url, i18n.gettext("open the bench page %(url)s", url=bench_url))
        html = _bench_poster_html(bench_name, wifi, bench_url, legal_hotline, printed_on, join, open_page, allies)
    return Poster("poster", html, (join, open_page))


def _bench_poster_html(bench_name: str, wifi: BenchWifi, bench_url: str, legal_hotline: str, printed_on: date,
                       join: QrCode, open_page: QrCode, allies: Sequence[Any] = ()) -> str:
    return _environment().get_template("printing/bench_poster.html").render(
        bench_name=bench_name,
        wifi=wifi,
        bench_url=bench_url,
        legal_hotline=legal_hotline,
        printed_on=printed_on,
        join=join,
        open_page=open_page,
        allies=list(allies),
    )


def compact_poster(*, bench_name: str, text: str, compact_url: str, wifi: BenchWifi,
                   version_date: date | None, version_number: int, signatures: int, printed_on: date) -> Poster:
    """The compact as a poster, with a QR code to its page on the hub, where neighbours sign it."""
    with i18n.speaking(None):
        sign = QrCode("qr", compact_url, i18n.gettext("read and sign the compact at %(url)s", url=compact_url))
        html = _environment().get_template("printing/compact_poster.html").render(
            bench_name=bench_name,
            text=text,
            compact_url=compact_url,
            wifi=wifi,
            version_date=version_date,
            version_number=version_number,
            signatures=signatures,
            printed_on=printed_on,
            sign=sign,
        )
    return Poster("compact-poster", html, (sign,))

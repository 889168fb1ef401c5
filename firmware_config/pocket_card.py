"""The steward's pocket card: the radio commands, the legal hotline, the allies and the patrol channel's QR code.

A standalone HTML file with its print stylesheet inside, sized for A6, to be
printed from any browser; the hub does not serve it. It never mentions the
duress word: a card can be lost, and the word only works while nobody else
knows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from firmware_config.channel import channel_url
from firmware_config.network import PatrolNetwork
from firmware_config.profiles import URGENT_PRESETS
from firmware_config.qr import qr_svg_inline
from server import i18n
from server.domain.radio_commands import POCKET_CARD, canned_messages

TEMPLATE = "pocket_card.html"


@dataclass(frozen=True)
class CardCommand:
    syntax: str
    meaning: str
    urgent: bool


def pocket_card_html(net: PatrolNetwork, allies: Sequence[Any] = ()) -> str:
    """The pocket card as a complete HTML document; ``allies``: vows in force (allies.card_vows), a short list."""
    with i18n.speaking(None):  # the card is in the hub's language, as is everything on the air
        return _card(net, allies)


def _card(net: PatrolNetwork, allies: Sequence[Any] = ()) -> str:
    env = i18n.teach(Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html"])))
    commands = [CardCommand(i18n.gettext(syntax), i18n.gettext(meaning), syntax.split()[0] in URGENT_PRESETS)
                for syntax, meaning in POCKET_CARD]
    canned = canned_messages()
    return env.get_template(TEMPLATE).render(
        bench_name=net.bench_name,
        commands=commands,
        canned=canned,
        urgent=[text for text in canned if text in URGENT_PRESETS],
        legal_hotline=net.legal_hotline,
        allies=list(allies),
        # "Linden Café (Market, shelter), St Anne's (Park, refreshment)": whole names, joined as a list.
        allies_line=", ".join(i18n.gettext("%(ally)s (%(area)s, %(kind)s)", ally=vow.ally, area=vow.area or "-",
                                           kind=vow.kind_label) for vow in allies),
        channel_name=net.channel_name,
        region=net.region,
        preset=net.preset,
        # qr_svg_inline builds the element itself and escapes its one attribute.
        qr_svg=Markup(qr_svg_inline(channel_url(net), i18n.gettext("QR code: join the patrol channel %(name)s",
                                                                   name=net.channel_name))),
    )

"""Every text the hub puts on the air fits one packet, in every language the bench ships.

Issue 15. A broadcast is written in the hub's language (SAFEBENCH_LANGUAGE):
English letters are one byte, Spanish accents two, Arabic letters two, and the
packet holds 200 bytes whatever the language (RADIO_FACTS.md). Each message
is rendered here at its longest: the longest handle (24), code (A999/C999),
place the air carries (cut to its limit), count, hotline; a drill and an
unverified sender, which add words; and it must fit with the bell.
Placeholders are the widest ASCII a steward types; a place typed in Arabic
is cut by characters like any other.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest

from radio_bridge import inbound
from server import i18n
from server.domain import alerts, cases, overdue
from server.domain.radio_commands import Verb, help_text, parse_command
from server.domain.radio_text import BELL, PACKET_LIMIT, utf8_len

HANDLE = "W" * 24
PLACE = "W" * 200  # cut by the message itself to what the air carries
AREA = "W" * 40
HOTLINE = "+49 30 1234 5678 90"
AT = datetime(2026, 12, 6, 21, 40)
WITH_BELL = PACKET_LIMIT - utf8_len(BELL)


def longest_alerts() -> list[SimpleNamespace]:
    member = SimpleNamespace(handle=HANDLE)
    shapes = []
    for kind in (alerts.SOS, alerts.PANIC, alerts.OVERDUE, alerts.DURESS):
        for drill in (False, True):
            for verified in (True, False):
                for place in (PLACE, None):
                    shapes.append(SimpleNamespace(
                        kind=kind, code="A999", drill=drill, verified=verified, place=place, member=member,
                        who=HANDLE, silent=kind == alerts.DURESS, detail=overdue.overdue_detail(AT)))
    return shapes


def longest_cases() -> list[SimpleNamespace]:
    shapes = []
    for air_place in (PLACE, f"{AREA}, {cases.DETAILS_WITH_DISPATCH}", cases.PLACE_WITH_DISPATCH):
        for drill in (False, True):
            for verified in (True, False):
                shapes.append(SimpleNamespace(code="C999", drill=drill, verified=verified, air_place=air_place,
                                              arrested=cases.MAX_COUNT, arrested_at=AT, outstanding=cases.MAX_COUNT))
    return shapes


def everything_on_the_air() -> list[str]:
    """Each radio text, rendered in the language being spoken."""
    texts = []
    for alert in longest_alerts():
        texts += [alerts.alert_text(alert, stage) for stage in (0, 1, 2)]
        if not alert.silent:
            texts += [alerts.confirmed_text(alert), alerts.also_at_text(alert, PLACE), alerts.resolved_text(alert)]
    member = SimpleNamespace(handle=HANDLE)
    for case in longest_cases():
        texts += [cases.case_text(case, HOTLINE), cases.case_text(case), cases.held_text(case, member),
                  cases.report_notice(case)]
        with i18n.speaking(None):
            texts.append(i18n.gettext("%(drill)s%(code)s: %(hours)d h since arrest, %(n)d not released. "
                                      "Check the case.", drill=i18n.gettext("DRILL "), code=case.code, hours=48,
                                      n=case.outstanding))
    texts.append(overdue.overdue_ping_text(AT))
    with i18n.speaking(None):
        texts += [help_text(None)] + [help_text(verb) for verb in Verb if verb is not Verb.UNKNOWN]
        texts += [i18n.gettext(inbound.MISSED_TEXT), i18n.gettext(inbound.LAPSED_TEXT),
                  i18n.gettext(inbound.UNKNOWN_TEXT), i18n.gettext(inbound.NEEDS_PROOF_TEXT, verb="CLR"),
                  inbound.counts_line(999, 999),
                  i18n.gettext("On shift: %(n)d stewards.", n=999),
                  i18n.gettext("%(status)s Alerts open: %(n)d.",
                               status=i18n.gettext("On shift: %(n)d stewards.", n=999), n=999),
                  i18n.gettext("Open: %(alerts)s", alerts=", ".join([f"A999 {HANDLE}"] * 2))]
        # The reasons an unknown command is answered with (an error reply falls back to a short one if
        # a reason is too long, but a steward who slipped deserves the real reason).
        for typed in ("", "!!", "SOD", "AREST", "INC", "INC x, " + PLACE, "ON " + PLACE, "CI " + "W" * 201,
                      "ACK", "CLR x", "OFF to the shop", "ON my way", "hello", "need help SOS", 12):
            command = parse_command(typed)  # type: ignore[arg-type]
            assert not command.is_known, typed
            texts.append(command.reason)
    return texts


@pytest.mark.parametrize("language", sorted(i18n.LANGUAGES))
def test_every_radio_text_fits_one_packet_with_the_bell_at_its_longest(language, monkeypatch):
    monkeypatch.setattr(i18n, "_hub", [language])  # SAFEBENCH_LANGUAGE, as the bridge reads it at start
    with i18n.speaking(language):
        texts = everything_on_the_air()
    too_long = [(utf8_len(text), text) for text in texts if utf8_len(text) > WITH_BELL]
    assert not too_long, f"{language}: over {WITH_BELL} bytes: {too_long[:3]}"
    assert all(texts), "every message says something"
    if language != "en":
        monkeypatch.setattr(i18n, "_hub", ["en"])
        with i18n.speaking("en"):
            english = everything_on_the_air()
        untranslated = [text for text, same in zip(texts, english, strict=True) if text == same and " " in text]
        assert len(untranslated) < len(texts) / 10, f"{language}: the air still speaks English: {untranslated[:3]}"


def test_the_air_speaks_the_hubs_language_whatever_page_raised_the_alarm(monkeypatch):
    monkeypatch.setattr(i18n, "_hub", ["es"])
    alert = longest_alerts()[0]
    with i18n.speaking("ar"):  # an Arabic visitor's request raising it on the web
        text = alerts.alert_text(alert)
        assert i18n.active() == "ar", "the page goes on in its visitor's language"
    with i18n.speaking("es"):
        assert text == alerts.alert_text(alert)
    assert "ACK A999" in text and "ACK A999 to respond" not in text, "Spanish on the air, the command word kept"

"""Stories of what stewards type on their handhelds, and what the hub reads in it."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.radio_commands import (
    MAX_NOTE,
    MAX_PLACE,
    POCKET_CARD,
    Command,
    Verb,
    canned_messages,
    help_text,
    normalize_alert_code,
    parse_command,
)
from server.domain.radio_text import fits_one_packet


def test_a_steward_with_a_thumb_wheel_types_ci():
    assert parse_command("ci") == Command(Verb.CHECK_IN)


def test_a_canned_message_arrives_with_the_bell_and_stray_space():
    assert parse_command("  CI\x07 ").verb is Verb.CHECK_IN
    assert parse_command("SOS\x07").verb is Verb.SOS


def test_arrest_with_a_count_and_a_note():
    command = parse_command("ARREST Market 3 two officers")
    assert (command.verb, command.where, command.count, command.note) == (Verb.ARREST, "Market", 3, "two officers")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        # check-ins, with every spelling on the card
        ("CI", Command(Verb.CHECK_IN)),
        ("ci.", Command(Verb.CHECK_IN)),
        ("ok!", Command(Verb.CHECK_IN)),
        ("Ok all quiet", Command(Verb.CHECK_IN, note="all quiet")),
        ("CHECKIN", Command(Verb.CHECK_IN)),
        ("check in: lights out on Elm", Command(Verb.CHECK_IN, note="lights out on Elm")),
        ("Check-in", Command(Verb.CHECK_IN)),
        ("CI 👍", Command(Verb.CHECK_IN, note="👍")),
        ("'OK'", Command(Verb.CHECK_IN)),
        # shifts
        ("ON", Command(Verb.ON)),
        ("on North End", Command(Verb.ON, area="North End")),
        ("START market", Command(Verb.ON, area="market")),
        ("OFF", Command(Verb.OFF)),
        ("off duty", Command(Verb.OFF)),
        ("END.", Command(Verb.OFF)),
        # incidents
        ("INC fight, Market St", Command(Verb.INCIDENT, what="fight", where="Market St")),
        ("inc: shouting @ bus stop", Command(Verb.INCIDENT, what="shouting", where="bus stop")),
        ("INC broken glass near the school", Command(Verb.INCIDENT, what="broken glass near the school")),
        ("INCIDENT car alarm, Elm, 2nd time", Command(Verb.INCIDENT, what="car alarm", where="Elm, 2nd time")),
        # alarms
        ("SOS", Command(Verb.SOS)),
        ("sos!", Command(Verb.SOS)),
        ("SOS Market St by the bakery", Command(Verb.SOS, where="Market St by the bakery")),
        ("/sos", Command(Verb.SOS)),
        ("ＳＯＳ", Command(Verb.SOS)),  # a phone keyboard in full-width mode
        # arrests: the place first, then the first one- or two-digit number is the count
        ("ARREST", Command(Verb.ARREST)),
        ("ARREST 3", Command(Verb.ARREST, count=3)),
        ("arrest Market", Command(Verb.ARREST, where="Market")),
        ("ARREST 12 Baker St", Command(Verb.ARREST, where="12 Baker St")),
        ("ARREST 12 Baker St 2", Command(Verb.ARREST, where="12 Baker St", count=2)),
        ("ARREST Market 3, two officers", Command(Verb.ARREST, where="Market", count=3, note="two officers")),
        ("ARREST Market St 3 kids, one hurt", Command(Verb.ARREST, where="Market St", count=3, note="kids, one hurt")),
        ("ARREST Bus stop 12, 2", Command(Verb.ARREST, where="Bus stop 12", count=2)),
        ("ARREST Bus stop 12, 2, one hurt", Command(Verb.ARREST, where="Bus stop 12", count=2, note="one hurt")),
        ("ARREST Market, riot van", Command(Verb.ARREST, where="Market", note="riot van")),
        ("ARREST Market 100 people watching", Command(Verb.ARREST, where="Market 100 people watching")),
        ("ARREST Elm 0", Command(Verb.ARREST, where="Elm 0")),
        # answers to alerts
        ("ACK A7", Command(Verb.ACK, code="A7")),
        ("ack a7", Command(Verb.ACK, code="A7")),
        ("ACK a 7", Command(Verb.ACK, code="A7")),
        ("ACK #A7", Command(Verb.ACK, code="A7")),
        ("ACK: A-07 on my way", Command(Verb.ACK, code="A7", note="on my way")),
        ("CLR A12", Command(Verb.CLEAR, code="A12")),
        ("clear a12. all calm", Command(Verb.CLEAR, code="A12", note="all calm")),
        # questions
        ("STATUS", Command(Verb.STATUS)),
        ("stat", Command(Verb.STATUS)),
        ("HELP", Command(Verb.HELP)),
        ("?", Command(Verb.HELP)),
        ("help arrest", Command(Verb.HELP, topic=Verb.ARREST)),
        ("HELP me", Command(Verb.HELP)),
    ],
)
def test_what_the_hub_reads(typed, expected):
    assert parse_command(typed) == expected


@pytest.mark.parametrize(
    ("typed", "verb"),
    [("CHEKIN", Verb.CHECK_IN), ("STAUTS", Verb.STATUS), ("STATS", Verb.STATUS), ("HLEP", Verb.HELP),
     ("INCIDNET fight", Verb.INCIDENT), ("chekcin", Verb.CHECK_IN)],
)
def test_a_slip_in_a_long_harmless_word_is_forgiven_and_noted(typed, verb):
    command = parse_command(typed)
    assert command.verb is verb
    assert command.corrected_from == typed.split()[0].upper()


@pytest.mark.parametrize("typed", ["OFFF", "ONE", "CLAER A7", "STRAT", "AKC A7", "CL A7", "IN fight"])
def test_short_words_and_the_ones_that_stand_responders_down_must_be_exact(typed):
    assert parse_command(typed).verb is Verb.UNKNOWN


@pytest.mark.parametrize(
    "typed",
    ["SOD", "S0S", "SOSS", "SSO", "OS", "sos2", "mayday", "911", "112", "🆘", "🆘 park",
     "need help SOS", "at the park 🆘", "please, mayday"],
)
def test_something_like_sos_is_never_taken_for_sos_but_is_answered_did_you_mean(typed):
    command = parse_command(typed)
    assert command.verb is Verb.UNKNOWN
    assert command.suggestion is Verb.SOS
    assert command.reason.startswith("Did you mean SOS?")


@pytest.mark.parametrize("typed", ["AREST Market", "ARRST", "arrested at the market", "ARRESTS 2"])
def test_something_like_arrest_opens_no_case(typed):
    command = parse_command(typed)
    assert command.verb is Verb.UNKNOWN
    assert command.suggestion is Verb.ARREST


_EDIT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@st.composite
def one_slip(draw, word: str) -> str:
    """``word`` with one insert, delete, replacement or swap of neighbours."""
    kind = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
    i = draw(st.integers(0, len(word) - 1))
    ch = draw(st.sampled_from(_EDIT_CHARS))
    if kind == "insert":
        return word[:i] + ch + word[i:]
    if kind == "delete":
        return word[:i] + word[i + 1:]
    if kind == "replace":
        return word[:i] + ch + word[i + 1:]
    i = min(i, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


@settings(max_examples=150)
@given(st.data())
def test_no_slip_of_the_thumb_ever_raises_an_alarm_or_opens_a_case(data):
    word = data.draw(st.sampled_from(["SOS", "ARREST"]))
    slipped = data.draw(one_slip(word))
    tail = data.draw(st.sampled_from(["", " Market St", "!", " 3"]))
    command = parse_command(slipped.lower() + tail)
    if slipped != word:
        assert command.verb not in (Verb.SOS, Verb.ARREST)


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [("on my way", Verb.ACK), ("ON it!", Verb.ACK), ("off to the shop", Verb.OFF), ("end of the road", Verb.OFF)],
)
def test_chat_that_starts_like_a_shift_command_changes_no_shift(typed, suggestion):
    command = parse_command(typed)
    assert command.verb is Verb.UNKNOWN
    assert command.suggestion is suggestion


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [("INC", Verb.INCIDENT), ("ACK", Verb.ACK), ("ACK 7", Verb.ACK), ("CLR A", Verb.CLEAR), ("ACK A7B", Verb.ACK)],
)
def test_a_command_missing_its_essentials_says_what_is_missing(typed, suggestion):
    command = parse_command(typed)
    assert command.verb is Verb.UNKNOWN
    assert command.suggestion is suggestion
    assert "A7" in command.reason or "what happened" in command.reason


@pytest.mark.parametrize(
    "junk",
    ["", "   ", "\x07", "\x00\x01\xff\xfe", "👍", "🙂🙂🙂", "...", "hello there", "x" * 1000, "\ud800CI?",
     b"\xff\xfe\x00binary".decode("latin-1"), "\ufeff"],
)
def test_junk_is_unknown_with_a_reason(junk):
    command = parse_command(junk)
    assert command.verb is not Verb.SOS
    if command.verb is Verb.UNKNOWN:
        assert command.reason


def test_bytes_from_a_raw_packet_are_read_too():
    assert parse_command(b"CI all quiet").note == "all quiet"
    assert parse_command(b"\xff\xfe\x00").verb is Verb.UNKNOWN
    assert parse_command(None).verb is Verb.UNKNOWN  # type: ignore[arg-type]


def test_notes_are_kept_to_one_packets_worth_but_alarms_are_never_refused():
    assert parse_command("CI " + "n" * MAX_NOTE).note == "n" * MAX_NOTE
    too_long = parse_command("CI " + "n" * (MAX_NOTE + 1))
    assert too_long.verb is Verb.UNKNOWN and "too long" in too_long.reason
    assert parse_command("INC " + "w" * (MAX_NOTE + 1)).verb is Verb.UNKNOWN
    assert parse_command("ON " + "a" * (MAX_PLACE + 1)).verb is Verb.UNKNOWN

    sos = parse_command("SOS " + "p" * 1000)
    assert sos.verb is Verb.SOS and sos.where == "p" * MAX_PLACE
    arrest = parse_command("ARREST Market 2 " + "n" * 1000)
    assert arrest.verb is Verb.ARREST and arrest.count == 2 and len(arrest.note) == MAX_NOTE


@pytest.mark.parametrize(
    ("raw", "code"),
    [("A7", "A7"), ("a7", "A7"), ("a 7", "A7"), ("#A7", "A7"), ("A-07", "A7"), (" ab12 ", "AB12"),
     ("7", ""), ("A", ""), ("A7B", ""), ("ABC7", ""), ("A12345", ""), ("", "")],
)
def test_alert_codes_are_read_the_way_people_type_them(raw, code):
    assert normalize_alert_code(raw) == code


def test_a_command_is_a_value():
    command = parse_command("CI")
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.note = "changed"  # type: ignore[misc]
    assert command.is_known and not parse_command("hello").is_known


def test_every_line_of_the_pocket_card_typed_as_printed_is_understood():
    verbs = set()
    for syntax, meaning in POCKET_CARD:
        command = parse_command(syntax.replace("[", "").replace("]", ""))
        assert command.is_known, syntax
        assert meaning
        verbs.add(command.verb)
    assert verbs == set(Verb) - {Verb.UNKNOWN}


def test_help_fits_one_packet_and_leads_with_sos():
    text = help_text()
    assert fits_one_packet(text)
    assert text.index("SOS") < 20
    assert "SAFE: shelter" in text  # where to go on a bad night comes right after how to call for help
    for verb in Verb:
        assert fits_one_packet(help_text(verb))
    assert help_text(Verb.ARREST).startswith("ARREST where")


def test_every_reason_fits_in_a_reply():
    for typed in ["", "hello", "SOD", "AREST", "INC", "ACK", "CI " + "x" * 300, "on my way", "off we go"]:
        command = parse_command(typed)
        assert command.reason and fits_one_packet(command.reason, 100), typed


def test_canned_messages_fit_the_module_and_each_is_a_command():
    presets = canned_messages()
    assert len("|".join(presets)) <= 200
    assert all("|" not in preset for preset in presets)
    for preset in presets:
        command = parse_command(preset)
        assert command.is_known, preset
        assert command.verb.value == preset  # the canonical spelling, as on the card
    # one notch too far on the wheel from the most used preset must not be SOS
    i = presets.index("CI")
    neighbours = {presets[i - 1], presets[(i + 1) % len(presets)]}
    assert "SOS" not in neighbours


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_at_all_is_read_without_an_exception(text):
    command = parse_command(text)
    assert isinstance(command, Command)
    assert command.is_known or command.reason
    assert len(command.note) <= MAX_NOTE and len(command.what) <= MAX_NOTE
    assert len(command.where) <= MAX_PLACE and len(command.area) <= MAX_PLACE


@settings(max_examples=150)
@given(st.binary(max_size=250))
def test_any_bytes_off_the_air_are_read_without_an_exception(raw):
    assert isinstance(parse_command(raw), Command)
    assert isinstance(parse_command(raw.decode("utf-8", "surrogateescape")), Command)


@settings(max_examples=100)
@given(
    st.sampled_from(["ci", "sos", "status", "arrest market 2", "ack a7"]),
    st.lists(st.booleans(), min_size=20, max_size=20),
    st.sampled_from(["", " ", "\x07", "  \x07", "!", ".", "\n"]),
)
def test_the_case_of_the_command_and_trailing_noise_do_not_matter(text, upper, tail):
    word, _, rest = text.partition(" ")
    mixed = "".join(ch.upper() if flip else ch for ch, flip in zip(word, upper, strict=False))
    assert parse_command(f"{mixed} {rest}{tail}") == parse_command(text)

"""What the aid board's contact filter catches, and the ordinary words it lets through.

Property tests: phone numbers written every way people write them, handles
and email addresses, among ordinary words, are always found; text made of
times, dates, amounts, prices and house numbers never is. The stories of
the forms that use it are in tests/test_aid.py.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.contact_in_text import EMAIL, HANDLE, PHONE, find_contact

WORDS = ["soup", "for", "anyone", "who", "needs", "it", "call", "ring", "text", "me", "on", "please", "bread",
         "chargers", "Saturday", "evenings", "ask", "Rowan", "at", "the", "bench", "thanks!", "(Elm", "Street)"]
words = st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join)
digits = st.integers(min_value=0, max_value=9).map(str)


def chunked(number: str, sizes: list[int]) -> list[str]:
    """``number`` cut into chunks of the given sizes (the last chunk takes what is left)."""
    chunks, at = [], 0
    for size in sizes:
        if at >= len(number):
            break
        chunks.append(number[at:at + size])
        at += size
    if at < len(number):
        chunks.append(number[at:])
    return chunks


@st.composite
def phone_numbers(draw) -> str:
    """A phone number as people write it: national or international, grouped any common way."""
    area = draw(st.integers(1, 9).map(str)) + "".join(draw(st.lists(digits, min_size=1, max_size=3)))
    subscriber = "".join(draw(st.lists(digits, min_size=4, max_size=8)))
    style = draw(st.sampled_from(["national", "brackets", "international", "spaced out"]))
    sep = draw(st.sampled_from([" ", ".", "-", "/", " / ", " - ", "\u2013", ""]))
    sizes = draw(st.lists(st.integers(2, 4), min_size=1, max_size=4))
    rest = sep.join(chunked(subscriber, sizes))
    if style == "national":
        return f"0{area}{sep or ' '}{rest}"
    if style == "brackets":
        return f"(0{area}) {rest}"
    if style == "international":
        country = draw(st.sampled_from(["49", "44", "1", "33", "90", "380"]))
        return f"+{country}{sep or ' '}{area}{sep or ' '}{rest}"
    return " ".join(f"0{area}{subscriber}")  # "0 1 7 6 5 5 5 ..."


@st.composite
def handles(draw) -> tuple[str, str]:
    name = draw(st.from_regex(r"[a-z][a-z0-9_]{1,12}[a-z0-9]", fullmatch=True))
    shape = draw(st.sampled_from(["signal @{}", "telegram: @{}", "@{} on insta", "dm @{}", "Signal: {}.42",
                                  "t.me/{}", "insta: {}"]))
    return shape.format(name), name


@st.composite
def emails(draw) -> str:
    user = draw(st.from_regex(r"[a-z][a-z0-9._+-]{0,10}[a-z0-9]", fullmatch=True))
    host = draw(st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True))
    return f"{user}@{host}.{draw(st.sampled_from(['org', 'de', 'com', 'co.uk']))}"


# -- ordinary text: times, dates, amounts, prices, house numbers -----------------------------

hours = st.integers(0, 23)
minutes = st.integers(0, 59)


@st.composite
def times(draw) -> str:
    h, m = draw(hours), draw(minutes)
    h2 = draw(st.integers(h + 1, 24))
    return draw(st.sampled_from([f"{h}:{m:02d}", f"{h}.{m:02d}", f"{h:02d}:{m:02d}", f"{h}-{h2}", f"{h} - {h2}",
                                 f"{h}:{m:02d}-{h2}:{m:02d}", f"{h}.{m:02d}\u2013{h2}.00", f"{h}:{m:02d} - {h2}:00"]))


@st.composite
def dates(draw) -> str:
    d, mo, y = draw(st.integers(1, 28)), draw(st.integers(1, 12)), draw(st.integers(2020, 2030))
    return draw(st.sampled_from([f"{d}.{mo}.{y}", f"{d:02d}.{mo:02d}.{y}", f"{d}.{mo}.", f"{y}-{mo:02d}-{d:02d}",
                                 f"{d}/{mo}", f"{d}/{mo}/{y}", f"{d}.{mo}.{y % 100:02d}"]))


@st.composite
def amounts(draw) -> str:
    n, small = draw(st.integers(1, 999)), draw(st.integers(1, 99))
    return draw(st.sampled_from([f"{small} bags", f"{small}.{n % 10} kg", f"{small},{n % 100:02d} €",
                                 f"{n} g", f"{small} x {n} ml", f"€{small}", f"{n} flyers"]))


house_numbers = st.integers(1, 300).flatmap(lambda n: st.sampled_from([f"Nr. {n}", f"no. {n}", f"house {n}b"]))


@st.composite
def ordinary_text(draw) -> str:
    """Sentences of words, times and dates side by side, amounts and house numbers, as posts are written."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        when = draw(st.lists(st.one_of(times(), dates()), min_size=1, max_size=3))
        parts.append(draw(st.sampled_from([" ", ", ", " and "])).join(when))
        if draw(st.booleans()):
            # An amount straight after a time or date ("21.11.2026 500 g"), or after a word.
            parts.append(draw(st.sampled_from(["", "then ", "and "])) + draw(amounts()))
        if draw(st.booleans()):
            parts.append(draw(house_numbers))
        parts.append(draw(words))
    return " ".join(part for part in parts if part)


# -- the properties --------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(before=words, number=phone_numbers(), after=words)
def test_a_phone_number_is_found_however_it_is_grouped(before, number, after):
    found = find_contact(f"{before} {number} {after}".strip())
    assert found is not None and found.what == PHONE, number
    assert set(number) & set("0123456789") <= set(found.excerpt)


@settings(max_examples=200, deadline=None)
@given(before=words, handle=handles(), after=words)
def test_a_messenger_handle_is_found(before, handle, after):
    written, name = handle
    found = find_contact(f"{before} {written} {after}".strip())
    assert found is not None and found.what == HANDLE, written
    assert name in found.excerpt


@settings(max_examples=200, deadline=None)
@given(before=words, address=emails(), after=words)
def test_an_email_address_is_found(before, address, after):
    found = find_contact(f"{before} {address} {after}".strip())
    assert found is not None and found.what == EMAIL and found.excerpt == address


@settings(max_examples=600, deadline=None)
@given(text=ordinary_text())
def test_times_dates_amounts_and_house_numbers_are_never_taken_for_a_contact(text):
    assert find_contact(text) is None, text


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=1000))
def test_what_is_found_in_any_text_is_in_it(text):
    found = find_contact(text)
    if found is not None:
        assert found.excerpt in text


def test_the_longest_message_is_read_at_once_however_its_digits_fall():
    """No input makes the filter backtrack: the worst a message of 1000 characters can do is cheap."""
    worst = ["1.1." * 250, "1 " * 500, "12:00-" * 166, "1-" * 500, "@a" * 500, "a@" * 500 + ".",
             "signal:" * 140, "1" * 1000, "(1) " * 250, "12.12.12 " * 111, "a" * 1000, "a." * 500 + "@"]
    started = time.perf_counter()
    for text in worst:
        find_contact(text)
    assert time.perf_counter() - started < 1.0


def test_the_examples_people_write():
    caught = {
        "0176 555 0123": PHONE, "0176.555.0123": PHONE, "+49-176-5550123": PHONE, "(030) 555 01 23": PHONE,
        "01 23 45 67 89": PHONE, "0 1 7 6 5 5 5 0 1 2 3": PHONE, "12 30 15 22 11": PHONE,
        "21.11.2026 5550123": PHONE, "call 07700 900123": PHONE, "010 2000": PHONE,
        "signal @name": HANDLE, "telegram: @name": HANDLE, "@name on insta": HANDLE, "wa.me/491765550123": HANDLE,
        "rowan@example.org": EMAIL,
    }
    for text, what in caught.items():
        found = find_contact(f"Soup for anyone, {text}")
        assert found is not None and found.what == what, text
    for text in ("from 18:00", "2 bags", "Nr. 12", "1.5 kg", "3,50 €", "Sat 21.11. 10-12", "10-12 14-16 18-20",
                 "28.11.2026 and 2026-12-05, 10.00-12.00", "21.11.2026 500 g of rice", "@ the bench at 18:00",
                 "meet @18:00", "24/7", "Hauptstr. 12, 10115 Berlin", "2 x 500 ml, 3.5 l"):
        assert find_contact(text) is None, text
    # What the writer is shown: the words themselves, and a long run cut short.
    assert find_contact("x " + "1 " * 300).shown.endswith("\u2026")
    assert len(find_contact("x " + "1 " * 300).shown) == 40

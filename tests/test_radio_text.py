"""Stories of text that has to fit a 200-byte radio packet."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.radio_text import (
    BELL,
    MIN_LIMIT,
    clusters,
    fits_one_packet,
    split_for_radio,
    utf8_len,
    with_bell,
)

_PREFIX = re.compile(r"^(\d+)/(\d+) ")


def bodies(parts: list[str]) -> list[str]:
    """The parts without their "i/n " numbers."""
    return [_PREFIX.sub("", part, count=1) for part in parts]


def test_bytes_are_counted_not_characters():
    assert utf8_len("SOS") == 3
    assert utf8_len("é") == 2
    assert utf8_len("👍") == 4
    assert fits_one_packet("é" * 100) and not fits_one_packet("é" * 101)


def test_a_short_alert_goes_out_unchanged_as_one_part():
    text = "A7 SOS Market St\nresponders: ACK A7"
    assert split_for_radio(text) == [text]
    assert split_for_radio("") == [""]
    assert split_for_radio("x" * 200) == ["x" * 200]


def test_a_long_status_is_split_between_words_and_numbered():
    text = " ".join(f"steward{i} on Market St since 20:{i:02d}," for i in range(12))
    parts = split_for_radio(text)
    assert len(parts) > 1
    for i, part in enumerate(parts, start=1):
        assert part.startswith(f"{i}/{len(parts)} ")
        assert utf8_len(part) <= 200
    assert " ".join(bodies(parts)).split() == text.split()


def test_the_number_prefix_grows_with_ten_parts_or_more_and_still_fits():
    text = " ".join(["word"] * 700)
    parts = split_for_radio(text, limit=40)
    assert len(parts) >= 100
    assert parts[0].startswith(f"1/{len(parts)} ")
    assert parts[-1].startswith(f"{len(parts)}/{len(parts)} ")
    assert all(utf8_len(part) <= 40 for part in parts)
    assert " ".join(bodies(parts)).split() == text.split()


def test_every_count_of_parts_across_ten_and_a_hundred_is_numbered_within_the_limit():
    for words in range(1, 400, 3):
        text = " ".join(["ab"] * words)
        parts = split_for_radio(text, limit=30)
        assert all(utf8_len(part) <= 30 for part in parts), words
        if len(parts) > 1:
            assert [part.split(" ", 1)[0] for part in parts] == [f"{i}/{len(parts)}" for i in range(1, len(parts) + 1)]


def test_a_word_longer_than_a_packet_is_cut_between_characters():
    word = "ü" * 150  # 300 bytes
    parts = split_for_radio(f"see {word} ok", limit=100)
    assert all(utf8_len(part) <= 100 for part in parts)
    assert "".join(bodies(parts)).replace(" ", "") == f"see{word}ok"
    for part in parts:
        part.encode("utf-8").decode("utf-8")


def test_emoji_sequences_and_accents_are_not_torn_apart():
    family = "👨\u200d👩\u200d👧\u200d👦"  # 25 bytes, one picture
    accented = "e\u0301"  # an e and its combining accent
    flag = "🇬🇧"
    assert clusters(f"{family}{accented}{flag}👍🏽") == [family, accented, flag, "👍🏽"]
    parts = split_for_radio((family + accented + flag) * 20, limit=50)
    for body in bodies(parts):
        assert clusters(body)[0] in (family, accented, flag)
        assert not body.startswith(("\u200d", "\u0301"))


def test_a_cluster_bigger_than_a_packet_is_still_cut_into_valid_utf8():
    zalgo = "a" + "\u0301" * 200  # 401 bytes, one "character"
    parts = split_for_radio(zalgo, limit=50)
    assert all(utf8_len(part) <= 50 for part in parts)
    assert "".join(bodies(parts)) == zalgo


def test_a_lone_surrogate_cannot_go_on_the_air():
    parts = split_for_radio("bad \ud800 text")
    assert parts == ["bad \ufffd text"]


def test_too_small_a_limit_is_refused():
    with pytest.raises(ValueError):
        split_for_radio("hello world", limit=MIN_LIMIT - 1)


def test_an_urgent_message_carries_the_bell_and_still_fits():
    assert with_bell("SOS A7 Market St") == "SOS A7 Market St" + BELL
    assert with_bell("SOS A7" + BELL) == "SOS A7" + BELL  # never two bells
    long = with_bell("é" * 150)
    assert long.endswith(BELL) and utf8_len(long) <= 200
    cut = with_bell("x" * 190 + "👨\u200d👩\u200d👧")
    assert cut == "x" * 190 + BELL  # the family is left out whole, not in pieces
    assert utf8_len(with_bell("y" * 500, limit=50)) == 50


@settings(max_examples=200)
@given(st.text(max_size=700), st.integers(MIN_LIMIT, 240))
def test_every_part_fits_is_valid_utf8_and_numbered(text, limit):
    parts = split_for_radio(text, limit)
    for part in parts:
        assert utf8_len(part) <= limit
        assert part.encode("utf-8").decode("utf-8") == part
    if len(parts) == 1 and fits_one_packet(text, limit):
        assert parts == [text]
        return
    numbers = [_PREFIX.match(part) for part in parts]
    assert all(numbers)
    assert [int(m.group(1)) for m in numbers] == list(range(1, len(parts) + 1))
    assert {int(m.group(2)) for m in numbers} == {len(parts)}
    # Nothing is lost or reordered: the same characters, only the white space differs.
    assert "".join("".join(bodies(parts)).split()) == "".join(text.split())


@settings(max_examples=150)
@given(st.lists(st.text(st.characters(blacklist_categories=("Z", "Cc", "Cs")), min_size=1, max_size=20),
                max_size=80))
def test_words_that_fit_a_part_come_back_whole_and_in_order(words):
    text = " ".join(words)
    parts = split_for_radio(text, limit=120)
    if len(parts) > 1:
        assert " ".join(bodies(parts)).split() == text.split()


@settings(max_examples=150)
@given(st.text(max_size=400), st.integers(MIN_LIMIT, 240))
def test_with_bell_always_fits_and_ends_with_the_bell(text, limit):
    result = with_bell(text, limit)
    assert result.endswith(BELL)
    assert utf8_len(result) <= limit
    result.encode("utf-8")

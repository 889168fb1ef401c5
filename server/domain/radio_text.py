"""Fitting text into radio packets: bytes, not characters.

The Meshtastic apps cap a text message at 200 UTF-8 bytes, and so do we:
an "é" is two bytes, most emoji four, a family emoji with its joiners
twenty-five. Longer text is sent as numbered parts ("1/3 ...") split between
words, and never inside a character; where it can, never inside what a reader
sees as one character either (an accent and its letter, an emoji sequence).
"""

from __future__ import annotations

import unicodedata

PACKET_LIMIT = 200
BELL = "\x07"
# The smallest limit we split for: room for a "999/999 " prefix and two
# four-byte characters after it.
MIN_LIMIT = 16

_ZWJ = "\u200d"


def utf8_len(s: str) -> int:
    """How many bytes ``s`` takes on the air."""
    # A lone surrogate cannot be sent; it is counted as the U+FFFD that
    # ``_scrub`` turns it into, which is three bytes too.
    return len(s.encode("utf-8", "surrogatepass"))


def fits_one_packet(s: str, limit: int = PACKET_LIMIT) -> bool:
    """Whether ``s`` goes out as one text message."""
    return utf8_len(s) <= limit


def split_for_radio(text: str, limit: int = PACKET_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` bytes, numbered "1/3 " when there are several.

    A text that fits is returned unchanged as the only part (an empty text
    too). Otherwise parts break between words, runs of white space become one
    space, and a word too long for a part is cut between characters.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"A packet limit of {limit} bytes leaves no room for text; at least {MIN_LIMIT}.")
    text = _scrub(text)
    if fits_one_packet(text, limit):
        return [text]
    words = text.split()
    # The prefix is as wide as "n/n " for the widest n; a wider count means
    # less room per part and perhaps more parts, so pack again until the
    # width we assumed holds. Widths only grow, so this ends.
    digits = 1
    while True:
        room = limit - (2 * digits + 2)
        if room < 4:
            raise ValueError(f"Too long to send in parts of {limit} bytes.")
        bodies = _pack(words, room)
        if len(str(len(bodies))) <= digits:
            break
        digits = len(str(len(bodies)))
    total = len(bodies)
    return [f"{i}/{total} {body}" for i, body in enumerate(bodies, start=1)]


def with_bell(text: str, limit: int = PACKET_LIMIT) -> str:
    """``text`` with the bell character that makes a handheld buzz, cut if need be to stay one packet."""
    text = _scrub(text)
    if text.endswith(BELL):
        text = text[:-1]
    if not fits_one_packet(text + BELL, limit):
        text = _cut_to_bytes(text, limit - utf8_len(BELL)).rstrip()
    return text + BELL


def clusters(text: str) -> list[str]:
    """Break ``text`` into what a reader sees as single characters (a close approximation).

    Keeps together a character and its combining marks, emoji joined by
    zero-width joiners, variation selectors, skin-tone modifiers, tag
    sequences and the pairs of regional indicators that make a flag. Not the
    full Unicode rules (those need a library), but enough that no accent or
    emoji is torn apart at a packet boundary.
    """
    out: list[str] = []
    for ch in text:
        if out and (_extends(ch) or out[-1].endswith(_ZWJ) or _completes_flag(out[-1], ch)):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _extends(ch: str) -> bool:
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch == _ZWJ
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
    )


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _completes_flag(cluster: str, ch: str) -> bool:
    return len(cluster) == 1 and _is_regional_indicator(cluster) and _is_regional_indicator(ch)


def _scrub(text: str) -> str:
    """Replace lone surrogates, which no radio can carry, with U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


def _pack(words: list[str], room: int) -> list[str]:
    """Greedily fill parts of at most ``room`` bytes with whole words, cutting only words that fit no part."""
    bodies: list[str] = []
    current, used = "", 0
    for word in words:
        size = utf8_len(word)
        if current and used + 1 + size <= room:
            current, used = f"{current} {word}", used + 1 + size
            continue
        if current:
            bodies.append(current)
        if size <= room:
            current, used = word, size
            continue
        pieces = _hard_split(word, room)
        bodies.extend(pieces[:-1])
        current, used = pieces[-1], utf8_len(pieces[-1])
    if current:
        bodies.append(current)
    return bodies


def _hard_split(word: str, room: int) -> list[str]:
    """Cut one over-long word into pieces of at most ``room`` bytes, between clusters where possible."""
    pieces: list[str] = []
    current, used = "", 0
    for cluster in clusters(word):
        size = utf8_len(cluster)
        if size > room:
            # A cluster bigger than a whole part (a letter under hundreds of
            # accents): cut between code points, which is still valid UTF-8.
            for ch in cluster:
                if used + utf8_len(ch) > room:
                    pieces.append(current)
                    current, used = "", 0
                current, used = current + ch, used + utf8_len(ch)
            continue
        if used + size > room:
            pieces.append(current)
            current, used = "", 0
        current, used = current + cluster, used + size
    if current:
        pieces.append(current)
    return pieces


def _cut_to_bytes(text: str, room: int) -> str:
    """The longest start of ``text`` within ``room`` bytes, ending between clusters where possible."""
    kept = ""
    for cluster in clusters(text):
        if utf8_len(kept + cluster) > room:
            break
        kept += cluster
    else:
        return kept
    if not kept:
        # Even the first cluster is too big: keep whole code points of it.
        for ch in text:
            if utf8_len(kept + ch) > room:
                break
            kept += ch
    return kept

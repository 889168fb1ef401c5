"""Finding a way to reach someone in text that others will read.

The aid board's posts are public, and a helper's answer may be kept from
the poster, so the hub looks in such text for what would let a reader reach
a person: a phone number, an email address, a messenger handle or link.
Names and street addresses cannot be told from other words, so the forms ask
people to leave them out; these four can, and the hub refuses them.

Ordinary text must pass: times ("from 18:00", "10.00-12.00"), dates
("21.11.2026", "2026-12-05", "Sat 21.11."), amounts and prices ("2 bags",
"1.5 kg", "3,50 €"), house numbers ("Nr. 12"). So a run of digits counts as
a phone number only when it has seven digits or more, however they are
grouped (spaces, dots, dashes, slashes, brackets, a leading "+"), and it
cannot be read as a row of days, hours, minutes and years.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from server.i18n import N_

# What a refusal calls the contact it found: marked for the catalogs, translated where the refusal is written.
PHONE = N_("a phone number")
EMAIL = N_("an email address")
HANDLE = N_("a messenger name or handle")

MIN_PHONE_DIGITS = 7
MAX_EXCERPT = 40

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "@rowan", "@name on insta", "telegram: @name": an at sign before a name
# (a letter first, so "@ the bench" and "@18:00" are no handles).
_AT_HANDLE = re.compile(r"(?<![\w.@])@[^\W\d][\w.]*\w")
# Links that open a chat or a profile.
_LINK = re.compile(
    r"\b(?:t\.me|telegram\.me|wa\.me|signal\.me|signal\.group|instagram\.com|instagr\.am|facebook\.com|fb\.com"
    r"|m\.me|threema\.id|matrix\.to|discord\.gg|snapchat\.com|tiktok\.com)/\S+",
    re.IGNORECASE,
)
# "Signal: rowan.01", "insta: rowan_k": a messenger's name, a colon, a name.
# Only names that are nothing else in an aid post ("line", "session" and
# "wire" are left out on purpose); the colon is what makes it a handle.
_MESSENGER_COLON = re.compile(
    r"\b(?:signal|telegram|tg|whats\s?app|wa|insta(?:gram)?|ig|threema|discord|snapchat|tiktok|facebook|fb"
    r"|matrix|mastodon|wickr|viber|skype|wechat|kik)\s*[:=]\s*[^\s,;]{2,}",
    re.IGNORECASE,
)
# A run of digits and the characters people group phone numbers with. The
# separator class and \d never overlap, so matching is linear in the text.
_SEPARATORS = " \t\u00a0().:/-\u2010\u2011\u2012\u2013\u2014\u2015"
_RUN = re.compile(rf"\+?\(?\d(?:[{re.escape(_SEPARATORS)}]{{0,3}}\d)*")
_GROUP = re.compile(r"\d+")
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015")
# What an item of a run can be: a bare day, hour or count ("18", "2"), a
# range of them ("10-12"), or something fixed (a time, a date, a year).
_BARE, _RANGE, _FIXED = "bare", "range", "fixed"
_BEFORE = (None, _BARE, _RANGE, _FIXED)  # None: the start of the run


@dataclass(frozen=True)
class Found:
    what: str  # PHONE, EMAIL or HANDLE
    excerpt: str  # as it was written, to show the writer what to change

    @property
    def shown(self) -> str:
        """The excerpt as a message quotes it: a long one cut short."""
        return self.excerpt if len(self.excerpt) <= MAX_EXCERPT else self.excerpt[: MAX_EXCERPT - 1] + "\u2026"


def find_contact(text: str) -> Found | None:
    """The first way to reach someone written in ``text``, or None."""
    for what, pattern in ((EMAIL, _EMAIL), (HANDLE, _LINK), (HANDLE, _AT_HANDLE), (HANDLE, _MESSENGER_COLON)):
        if match := pattern.search(text):
            return Found(what, match.group().strip())
    for match in _RUN.finditer(text):
        if _is_phone_number(match.group()):
            return Found(PHONE, match.group().strip())
    return None


def _is_phone_number(run: str) -> bool:
    groups = _GROUP.findall(run)
    if sum(len(group) for group in groups) < MIN_PHONE_DIGITS:
        return False
    if run.startswith("+"):
        return True  # "+49 ..." is how numbers are written, never dates
    # What stands between one group of digits and the next, spaces dropped.
    between = [gap.strip() for gap in _GROUP.split(run)[1:-1]]
    return not any(
        _reads_as_dates_and_times(groups[head:len(groups) - tail], between[head:len(between) - tail], dated=head > 0)
        for head, tail in _amounts_around(groups, between)
    )


def _amounts_around(groups: list[str], between: list[str]) -> list[tuple[int, int]]:
    """How many groups may be set aside at each end as an amount or a house number.

    Before the dates and times, one short number and a space ("Nr. 32 1.1.2027"; not "010": a 0 first),
    when a date, a time or a range follows (else "555 01 23" would pass); after them, a
    number or a decimal ("21.11.2026 500 g", "18:00 32.5 kg"). Each is shorter
    than a phone number, and something is always left between.
    """
    # An amount or a house number never starts with a 0; an area code does ("010 2000" is no house 10 in 2000).
    heads = [0] + ([1] if len(groups[0]) <= 4 and not groups[0].startswith("0") and between and between[0] == ""
                   else [])
    tails = [0, 1] + ([2] if between and between[-1] in (".", ",") else [])
    return [(head, tail) for head in heads for tail in tails
            if head + tail < len(groups) and sum(map(len, groups[len(groups) - tail:])) < MIN_PHONE_DIGITS]


def _reads_as_dates_and_times(groups: list[str], between: list[str], dated: bool = False) -> bool:
    """Whether the groups read as times, dates, years, and days or hours with their ranges.

    "21.11.2026 10.00-12.00", "Sat 21.11. 10-12" and "10-12 14-16 18-20"
    do; "0176 555 0123", "030 555 01 23", "01 23 45 67 89" and
    "0 1 7 6 5 5 5 0 1 2 3" do not: two bare numbers never follow each
    other, and a range is never part of a longer chain of dashes. With
    ``dated``, the reading must hold a date, a time or a range (not only bare numbers).
    """
    count = len(groups)
    # ok[i][before]: the groups from i on read so, after an item of kind ``before``;
    # fixed[i][before]: they do, with more than bare numbers among them. Filled from
    # the end, so a long run costs no more than its length (and no recursion).
    ok: list[dict[str | None, bool]] = [{} for _ in range(count)] + [dict.fromkeys(_BEFORE, True)]
    fixed: list[dict[str | None, bool]] = [{} for _ in range(count)] + [dict.fromkeys(_BEFORE, False)]
    for i in range(count - 1, -1, -1):
        join = between[i - 1] if i else ""
        items = _items_at(groups, between, i)
        for before in _BEFORE:
            allowed = [(kind, used) for kind, used in items if _may_follow(before, join, kind)]
            ok[i][before] = any(ok[i + used][kind] for kind, used in allowed)
            fixed[i][before] = any((ok if kind != _BARE else fixed)[i + used][kind] for kind, used in allowed)
    return (fixed if dated else ok)[0][None]


def _items_at(groups: list[str], between: list[str], i: int) -> list[tuple[str, int]]:
    """Each way the groups from ``i`` can start: (what it is, how many groups it takes)."""
    found = []
    first = groups[i]
    if _small(first):
        found.append((_BARE, 1))
    if _year(first):
        found.append((_FIXED, 1))
    if i + 1 < len(groups):
        second, sep = groups[i + 1], between[i]
        if sep in (".", ":") and _hour(first) and _minute(second):
            found.append((_FIXED, 2))  # 18:00, 10.30
        if sep in (".", "/") and _day(first) and _month(second):
            found.append((_FIXED, 2))  # 21.11, 21/11
        if sep in _DASHES and _small(first) and _small(second) and int(first) < int(second):
            found.append((_RANGE, 2))  # 10-12
        if i + 2 < len(groups) and sep == between[i + 1] and sep in (".", "/", "-"):
            third = groups[i + 2]
            if _day(first) and _month(second) and len(third) in (2, 4):
                found.append((_FIXED, 3))  # 21.11.2026, 21/11/26
            if _year(first) and _month(second) and _day(third):
                found.append((_FIXED, 3))  # 2026-12-05
    return found


def _may_follow(before: str | None, join: str, kind: str) -> bool:
    if before == _BARE and kind == _BARE:
        return False  # "12 30 15", as a number is spaced out
    loose = (_BARE, _RANGE)
    return not (join in _DASHES and before in loose and kind in loose)  # "0-1-7-6"


def _small(group: str) -> bool:
    """A day, an hour or a count: one or two digits, at most 31."""
    return len(group) <= 2 and int(group) <= 31


def _day(group: str) -> bool:
    return len(group) <= 2 and 1 <= int(group) <= 31


def _month(group: str) -> bool:
    return len(group) <= 2 and 1 <= int(group) <= 12


def _year(group: str) -> bool:
    return len(group) == 4 and 1900 <= int(group) <= 2099


def _hour(group: str) -> bool:
    return len(group) <= 2 and int(group) <= 24


def _minute(group: str) -> bool:
    return len(group) == 2 and int(group) <= 59

"""A time as people type it on a phone in a hurry: ``21:40``, ``2140``, ``9.40pm``, ``21h40``, ``now``.

A neighbour who saw an arrest should not fight a date-time picker: any of
the usual ways of writing a time of day is read, in the hub's own zone,
and a time later than now is last night's (at 00:10, "23:50" is an hour
ago, not tomorrow). Flask-free: the web layer converts to and from UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from server.domain.errors import Invalid
from server.i18n import gettext as _

# Phones and the Pi disagree a little about the time: a minute or two ahead is still today.
CLOCK_SLACK = timedelta(minutes=5)

# 21:40, 21.40, 21h40, 21 40, 2140, 940, 21h, 9, each with an optional am/pm (a.m., p.m.).
# \d is any Unicode digit: int() reads Arabic-Indic digits as well as ASCII ones.
_TIME = re.compile(
    r"""^(?:
        (?P<h>\d{1,2})(?:(?:\s*[:.h]\s*|\s+)(?P<m>\d{2}))?   # 21:40, 9.40, 21h40, 21 40, 21, 9
        |(?P<hm>\d{3,4})                             # 2140, 940
        |(?P<hh>\d{1,2})\s*h                         # 21h
    )\s*(?:(?P<ampm>[ap])\.?\s*(?:m\.?)?)?$""",
    re.VERBOSE | re.IGNORECASE,
)
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}$")


def _refuse() -> Invalid:
    return Invalid(_("Please give the time like 21:40, 2140 or 9.40pm, or leave it empty for just now."),
                   field="when")


def read_time_of_day(typed: str | None) -> time | None:
    """The time of day ``typed`` names; None for "now" or nothing. Raises Invalid for anything else."""
    text = " ".join((typed or "").split()).lower()
    if not text or text in ("now", "just now", _("now").lower()):
        return None
    found = _TIME.match(text)
    if found is None:
        raise _refuse()
    if found["hm"]:
        digits = found["hm"]
        hour, minute = int(digits[:-2]), int(digits[-2:])
    else:
        hour, minute = int(found["h"] or found["hh"]), int(found["m"] or 0)
    if found["ampm"]:
        if not 1 <= hour <= 12:
            raise _refuse()  # "21pm" or "0am": which one was meant is anyone's guess
        hour = hour % 12 + (12 if found["ampm"] == "p" else 0)
    if hour > 23 or minute > 59:
        raise _refuse()
    return time(hour, minute)


def read_when(typed: str | None, local_now: datetime) -> datetime | None:
    """When ``typed`` says, as a wall-clock time in the hub's zone; None for just now.

    A time of day later than now (beyond the clock slack) is yesterday's. A
    date and time (``2026-11-21 21:40``, what dispatch may type for an older
    arrest) is taken as written; whether it is too old or in the future is
    the case's rule (domain/cases.py), not this one's.
    """
    text = (typed or "").strip()
    if _DATE_TIME.match(text):
        try:
            return datetime.fromisoformat(text.replace(" ", "T"))
        except ValueError:
            raise _refuse() from None
    wall_clock = read_time_of_day(text)
    if wall_clock is None:
        return None
    when = datetime.combine(local_now.date(), wall_clock)
    if when > local_now + CLOCK_SLACK:
        when -= timedelta(days=1)
    return when

"""Lunar cycles, new moon to new moon: the rhythm of the public audit.

The new moons come from PyEphem (the moon's true position, computed offline
on the Pi), never from a mean month: the real cycle runs from about 29.3 to
29.8 days, and an audit's edges should be the nights people saw.

Cycles are numbered by Meeus's lunation number: cycle 0 began with the new
moon of 6 January 2000, 18:14 UTC, so a number means the same cycle on
every bench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


# The new moon of lunation 0 (Meeus), and the mean length of a lunation: only
# to find which new moon to ask PyEphem for, never as an edge itself.
EPOCH = datetime(2000, 1, 6, 18, 14)
MEAN_LUNATION = timedelta(days=29.530588853)
# The true new moon strays from the mean one by well under a day; new moons
# are at least 29 days apart, so one search window this wide holds exactly one.
_SEARCH_BACK = timedelta(days=3)


@dataclass(frozen=True)
class Cycle:
    """One lunation: from one new moon (included) to the next (excluded), naive UTC."""

    number: int
    starts_at: datetime
    ends_at: datetime

    def contains(self, moment: datetime) -> bool:
        return self.starts_at <= moment < self.ends_at

    def has_ended(self, now: datetime) -> bool:
        return self.ends_at <= now


def next_new_moon(moment: datetime) -> datetime:
    """The first new moon after ``moment`` (naive UTC, to the second)."""
    # Imported here: the radio bridge loads the domain layer and never needs the moon.
    import ephem

    return ephem.next_new_moon(ephem.Date(moment)).datetime().replace(microsecond=0)


def cycle(number: int) -> Cycle:
    starts_at = next_new_moon(EPOCH + number * MEAN_LUNATION - _SEARCH_BACK)
    return Cycle(number, starts_at, next_new_moon(starts_at + timedelta(days=1)))


def cycle_at(moment: datetime) -> Cycle:
    """The cycle ``moment`` falls in."""
    guess = cycle(math.floor((moment - EPOCH) / MEAN_LUNATION))
    if moment < guess.starts_at:
        return cycle(guess.number - 1)
    if moment >= guess.ends_at:
        return cycle(guess.number + 1)
    return guess


def previous(of: Cycle) -> Cycle:
    return cycle(of.number - 1)


def new_moons(year: int) -> list[datetime]:
    """Every new moon of ``year``, in UTC."""
    moons, moment = [], next_new_moon(datetime(year, 1, 1))
    while moment.year == year:
        moons.append(moment)
        # A day on: the second kept is before the instant itself, which would be found again.
        moment = next_new_moon(moment + timedelta(days=1))
    return moons

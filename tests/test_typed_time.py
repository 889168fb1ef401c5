"""How the arrest form reads a time typed in a hurry (server/domain/typed_time.py).

Plain examples first, as neighbours write them; then properties: every time
of day written any of the usual ways reads back as itself, a result is never
later than now (beyond a phone's clock slack) nor more than a day ago, and
anything else is refused with the same clear words.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.errors import Invalid
from server.domain.typed_time import CLOCK_SLACK, read_time_of_day, read_when

REFUSED = "Please give the time like 21:40, 2140 or 9.40pm, or leave it empty for just now."
# A Saturday evening at the bench, in the hub's own zone.
EVENING = datetime(2026, 11, 21, 22, 5)


@pytest.mark.parametrize("typed, meant", [
    ("21:40", time(21, 40)), ("2140", time(21, 40)), ("9.40pm", time(21, 40)), ("9:40 pm", time(21, 40)),
    ("21h40", time(21, 40)), ("21 h 40", time(21, 40)), ("21 40", time(21, 40)), ("9:40 P.M.", time(21, 40)),
    ("940", time(9, 40)), ("9.40am", time(9, 40)), ("09:40", time(9, 40)), ("9pm", time(21, 0)),
    ("21h", time(21, 0)), ("21", time(21, 0)), ("12am", time(0, 0)), ("12.15pm", time(12, 15)),
    ("0:05", time(0, 5)), ("  21:40  ", time(21, 40)),
    # A phone set to Arabic types Arabic-Indic digits.
    ("٢١:٤٠", time(21, 40)),
])
def test_the_ways_people_write_a_time_of_day(typed, meant):
    assert read_time_of_day(typed) == meant


@pytest.mark.parametrize("typed", ["", "   ", None, "now", "Now", "just now"])
def test_empty_or_now_means_just_now(typed):
    assert read_time_of_day(typed) is None
    assert read_when(typed, EVENING) is None


@pytest.mark.parametrize("typed", ["half past nine", "25:00", "21:60", "21pm", "0am", "9:4", "21:400", "21::40",
                                   "tomorrow", "9m", "12345", "-21:40", "21:40:30"])
def test_anything_else_is_refused_in_words_that_say_how(typed):
    with pytest.raises(Invalid) as refused:
        read_time_of_day(typed)
    assert str(refused.value) == REFUSED
    assert refused.value.field == "when"


def test_a_time_later_than_now_was_last_night():
    just_after_midnight = datetime(2026, 11, 22, 0, 10)
    assert read_when("23:50", just_after_midnight) == datetime(2026, 11, 21, 23, 50)
    assert read_when("0:05", just_after_midnight) == datetime(2026, 11, 22, 0, 5)
    # A phone two minutes ahead of the hub is still talking about today.
    assert read_when("22:07", EVENING) == datetime(2026, 11, 21, 22, 7)
    assert read_when("22:20", EVENING) == datetime(2026, 11, 20, 22, 20)


def test_a_date_and_time_is_taken_as_written():
    # Dispatch opening a case for an arrest days ago types the date; the case decides whether it is too old.
    assert read_when("2026-11-19 21:40", EVENING) == datetime(2026, 11, 19, 21, 40)
    assert read_when("2026-11-19T21:40", EVENING) == datetime(2026, 11, 19, 21, 40)
    with pytest.raises(Invalid):
        read_when("2026-02-30 21:40", EVENING)


times_of_day = st.times().map(lambda t: t.replace(second=0, microsecond=0))


def written(moment: time, style: int) -> str:
    """``moment`` written one of the ways people write it."""
    twelve = moment.hour % 12 or 12
    suffix = "pm" if moment.hour >= 12 else "am"
    return [
        f"{moment:%H:%M}",
        f"{moment:%H%M}",
        f"{moment.hour}h{moment:%M}",
        f"{twelve}.{moment:%M}{suffix}",
        f"{twelve}:{moment:%M} {suffix.upper()}",
        f"{twelve}:{moment:%M} {suffix[0]}.m.",
    ][style]


@given(times_of_day, st.integers(0, 5))
def test_every_time_written_any_usual_way_reads_back_as_itself(moment, style):
    assert read_time_of_day(written(moment, style)) == moment


@given(times_of_day, st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31))
       .map(lambda d: d.replace(second=0, microsecond=0)))
def test_a_time_of_day_is_never_in_the_future_nor_more_than_a_day_ago(moment, now):
    when = read_when(f"{moment:%H:%M}", now)
    assert when.time() == moment
    assert now - timedelta(days=1) + CLOCK_SLACK <= when <= now + CLOCK_SLACK


@given(st.text(max_size=12))
def test_whatever_is_typed_reads_as_a_time_or_is_refused_never_a_crash(typed):
    try:
        result = read_time_of_day(typed)
    except Invalid as refused:
        assert str(refused) == REFUSED
    else:
        assert result is None or isinstance(result, time)

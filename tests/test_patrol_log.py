"""Stories of the patrol log: stewards go on shift, check in, log incidents, and the public sees process only."""

from __future__ import annotations

import pytest

from server.domain import patrol, people, sealing
from server.domain.errors import Invalid
from server.extensions import db
from tests.helpers import chose_to_show_handle, make_member, text_of, unsealed


@pytest.fixture
def steward(app):
    make_member(app, "Kestrel", "steward", password=None, node="!a1b2c3d4")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    return "Kestrel"


def test_a_steward_patrols_the_market_and_the_bench_page_shows_process_not_people(app, client, clock, steward):
    # Kestrel chose to show their handle (tests/test_steward_privacy.py: what the public sees of those who did not).
    chose_to_show_handle(app, steward)
    with app.app_context():
        kestrel = people.get_member(db.session, steward)
        patrol.start_shift(db.session, clock.advance(minutes=7), kestrel, "market square west", patrol.SOURCE_RADIO)
        patrol.record_check_in(db.session, clock.advance(minutes=20), kestrel, patrol.SOURCE_RADIO, note="quiet")
        patrol.record_incident(
            db.session, clock.advance(minutes=9), kestrel, patrol.SOURCE_RADIO,
            "man in red coat shouting at number 12 Elm St", place="12 Elm St",
        )
        db.session.commit()

    page = text_of(client.get("/"))
    assert "1 steward on patrol: 1 in Market." in page and "Showing their handle: Kestrel." in page
    log = text_of(client.get("/log"))
    assert "20:00 · Shift started · Kestrel · Market" in page
    assert "Incident logged Kestrel" in log
    # What stewards wrote, and places that are not published areas, stay with the hub.
    for private in ("red coat", "Elm", "quiet", "market square west"):
        assert private not in page
        assert private not in log
    # Times are rounded down to the quarter hour: 20:07 shows as 20:00.
    assert "20:00" in log and "20:07" not in log


def test_the_public_log_rounds_times_and_names_only_published_areas(app, clock, steward):
    with app.app_context():
        kestrel = people.get_member(db.session, steward)
        clock.advance(minutes=44)
        patrol.record_check_in(db.session, clock(), kestrel, patrol.SOURCE_WEB, place="Market")
        patrol.record_check_in(db.session, clock(), kestrel, patrol.SOURCE_WEB, place="behind the Market")
        db.session.commit()
        newest, oldest = patrol.public_log(db.session, limit=10, rounding_minutes=15)
    assert oldest.area == "Market"
    assert newest.area is None
    assert oldest.at.minute == 30 and oldest.at.second == 0


def test_a_steward_who_moves_keeps_one_shift_and_ending_it_twice_is_refused(app, clock, steward):
    with app.app_context():
        kestrel = people.get_member(db.session, steward)
        first = patrol.start_shift(db.session, clock(), kestrel, "Market", patrol.SOURCE_RADIO)
        again = patrol.start_shift(db.session, clock.advance(minutes=5), kestrel, "Station road", patrol.SOURCE_RADIO)
        assert again.id == first.id and again.place == "Station road" and again.area is None
        patrol.end_shift(db.session, clock.advance(hours=2), kestrel, patrol.SOURCE_RADIO)
        with pytest.raises(Invalid, match="not on shift"):
            patrol.end_shift(db.session, clock(), kestrel, patrol.SOURCE_RADIO)
        db.session.commit()
        assert patrol.on_patrol(db.session) == []
        kinds = [entry.kind for entry in reversed(patrol.recent_entries(db.session))]
    assert kinds == [patrol.SHIFT_START, patrol.CHECK_IN, patrol.SHIFT_END]


@pytest.mark.parametrize("raw, expected", [("!a1b2c3d4", 0xA1B2C3D4), ("A1B2C3D4", 0xA1B2C3D4),
                                           ("0x10", 16), ("2712847316", 2712847316)])
def test_node_ids_are_read_as_the_meshtastic_apps_print_them(raw, expected):
    assert people.parse_node_id(raw) == expected
    assert people.format_node_id(expected) == f"!{expected:08x}"


@pytest.mark.parametrize("raw", ["", "!zzzz", "!ffffffff", "0", "hello world", "!" + "1" * 40])
def test_impossible_node_ids_get_a_clear_message(raw):
    with pytest.raises(Invalid) as refused:
        people.parse_node_id(raw)
    assert "node" in refused.value.message.lower()


def test_free_text_loses_control_characters_and_keeps_everything_else(app, clock, steward):
    with app.app_context():
        kestrel = people.get_member(db.session, steward)
        entry = patrol.record_incident(db.session, clock(), kestrel, patrol.SOURCE_RADIO, "glass\x00 broken\x1b[31m 🚲 émeute")
        db.session.commit()
        assert sealing.is_sealed(entry.note)
        assert unsealed(app, entry.note) == "glass broken[31m 🚲 émeute"
        with pytest.raises(Invalid, match="too long"):
            patrol.record_incident(db.session, clock(), kestrel, patrol.SOURCE_RADIO, "x" * (patrol.MAX_NOTE + 1))
        with pytest.raises(Invalid, match="fill in"):
            patrol.record_incident(db.session, clock(), kestrel, patrol.SOURCE_RADIO, " \x07 ")

"""Stories of the patrol log growing old: after the retention it keeps what the audit counts, and no more.

A month of a steward's nights, on the clock: what they radioed (notes, a
place typed, an incident, a check-in under duress) stays for the hosts for
30 days; after that each entry keeps its kind, time and published area, the
shifts become counts per day and area, and the lunar audit's figures do not
move.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select

from radio_bridge.inbound import Inbound, InboundSettings
from radio_bridge.packets import Proof, TextPacket
from server.db import run_in_transaction
from server.domain import alerts, audit, lunar, patrol, people, radio_trust, retention
from server.domain.people import BROADCAST_NODE, DISPATCH, HOST, STEWARD
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import login, make_member, text_of, unsealed
from tests.test_audit import NOVEMBER, seed_november

KESTREL_NODE = 0xA1B2C3D4
KESTREL_KEY = bytes(range(1, 33))  # the X25519 key of Kestrel's handheld, pinned by the host
HUB_NODE = 0x5AFEB00C
DURESS_WORD = "bluebird"


class Handheld:
    """A steward's radio, through the bridge's own inbound handler: parsed, obeyed, committed."""

    packet_ids = itertools.count(1)

    def __init__(self, app, node: int) -> None:
        self.app, self.node = app, node
        self.inbound = Inbound(radio_node=lambda: HUB_NODE, settings=InboundSettings(duress_word=DURESS_WORD))

    def send(self, text: str, direct: bool = False) -> str:
        """On the channel; ``direct``: as a direct message to the hub, from the radio whose key was pinned."""
        proof = Proof(to=HUB_NODE, pki=True, public_key=KESTREL_KEY) if direct else Proof(to=BROADCAST_NODE)
        with self.app.app_context():
            now = self.app.config["CLOCK"]()
            packet = TextPacket(sender=self.node, packet_id=next(self.packet_ids), text=text, heard_at=now,
                                proof=proof)
            outcome = run_in_transaction(db.session, lambda s: self.inbound.handle_text(s, now, packet))
            db.session.remove()
        return outcome


def a_night_on_patrol(app, clock) -> None:
    """Kestrel's night on 21 November: a place typed, notes, an incident, a duress check-in, home; dispatch clears it."""
    make_member(app, "Osprey", HOST, term_days=42)  # still a host when the month is over
    make_member(app, "Heron", DISPATCH)
    make_member(app, "Kestrel", STEWARD, node="!a1b2c3d4")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        radio_trust.pin_key(db.session, clock(), people.get_member(db.session, "Kestrel"), KESTREL_KEY, by=None)
        db.session.commit()
    kestrel = Handheld(app, KESTREL_NODE)
    assert kestrel.send("ON Market by 6 Cobbold Row") == "on"
    clock.advance(minutes=20)
    assert kestrel.send("CI all quiet, saw Leofric Haverstock-Moyo at 5 Quarry Mews") == "check_in"
    clock.advance(minutes=20)
    assert kestrel.send("INC Ottoline Fairweather-Essien shouted at a child, 41 Brindle Street") == "incident"
    clock.advance(minutes=20)
    assert kestrel.send(f"CI quiet by Wicklow Passage, {DURESS_WORD}") == "check_in"
    clock.advance(minutes=40)
    assert kestrel.send("OFF", direct=True) == "off"
    clock.advance(minutes=5)
    with app.app_context():
        (silent,) = alerts.open_alerts(db.session)
        heron = people.get_member(db.session, "Heron")
        alerts.resolve(db.session, clock(), silent, heron, patrol.SOURCE_WEB, "Called her, she is home and fine")
        db.session.commit()


def log_rows(app) -> list[patrol.LogEntry]:
    with app.app_context():
        rows = list(db.session.scalars(select(patrol.LogEntry).order_by(patrol.LogEntry.id)))
        db.session.expunge_all()
        return rows


def test_after_thirty_days_the_log_keeps_kind_time_and_area_and_nothing_of_who_or_what_was_written(
        app, client, clock):
    a_night_on_patrol(app, clock)
    night = log_rows(app)
    assert [entry.kind for entry in night] == ["shift_start", "check_in", "incident", "check_in", "duress",
                                               "shift_end", "duress"]
    assert all(entry.member_id is not None for entry in night)
    assert "Cobbold" in unsealed(app, night[0].place) and night[0].shift_id is not None
    assert all(entry.note is not None for entry in night if entry.kind in ("incident", "duress"))

    # Twenty-nine days on, the hosts still read the night as it was.
    clock.now = night[0].at + timedelta(days=29)
    run_all_once(app)
    assert [(entry.member_id, entry.place) for entry in log_rows(app)] == [(e.member_id, e.place) for e in night]

    # A day past the retention: kind, time and area stay, for the audit and the public log; the rest is gone.
    clock.now = night[-1].at + timedelta(days=30, minutes=1)
    run_all_once(app)
    reduced = log_rows(app)
    assert [(e.id, e.kind, e.at, e.area_id) for e in reduced] == [(e.id, e.kind, e.at, e.area_id) for e in night]
    assert {(e.member_id, e.place, e.note, e.shift_id) for e in reduced} == {(None, None, None, None)}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(patrol.Shift)) == 0
        (tally,) = db.session.scalars(select(audit.ShiftTally))
        assert (tally.day.isoformat(), tally.area, tally.shifts, tally.minutes) == ("2026-11-21", "Market", 1, 100)
        assert tally.cycle == lunar.cycle_at(night[0].at).number

    # The public log still tells the night's process; the host's log shows entries by no steward, no place.
    public = text_of(client.get("/log"))
    assert "Shift started" in public and "Check-in" in public and "Market" in public
    login(client, "Osprey")
    page = client.get("/host/log")
    assert page.status_code == 200
    shown = text_of(page)
    assert shown.count("no steward") >= len(night) and "Silent alert" in shown
    for gone in ("Kestrel", "Cobbold", "Quarry", "Brindle", "Wicklow", DURESS_WORD):
        assert gone not in shown, gone


def test_the_audit_of_a_running_cycle_reads_the_same_before_and_after_its_shifts_become_counts(app, client, clock):
    seed_november(app, clock)
    clock.now = datetime(2026, 11, 15, 20, 0)
    run_all_once(app)  # the worker has kept the cycle's facts, shift by shift
    page_before = text_of(client.get(f"/audit/{NOVEMBER}"))
    assert "Stewards walked 5 shifts and checked in 7 times" in page_before
    with app.app_context():
        before = figures(audit.report(db.session, lunar.cycle(NOVEMBER), clock(), 360.0))

    # A hub keeping log notes 2 days only: November's shifts of the 12th go while the cycle still runs.
    app.config["LOG_NOTE_RETENTION_DAYS"] = 2
    outcomes = run_all_once(app)
    assert "0 log entries" not in " ".join(filter(None, outcomes))
    with app.app_context():
        open_shifts = db.session.scalars(select(patrol.Shift)).all()
        assert [shift.ended_at for shift in open_shifts] == [None], "only Finch's shift, still on patrol, is a row"
        tallies = {(t.cycle, t.area): (t.shifts, t.minutes) for t in db.session.scalars(select(audit.ShiftTally))}
        assert tallies == {(NOVEMBER - 1, "Linden Street"): (1, 0), (NOVEMBER, "Linden Street"): (3, 360),
                           (NOVEMBER, "Market Square"): (1, 30), (NOVEMBER, ""): (1, 30)}
        assert figures(audit.report(db.session, lunar.cycle(NOVEMBER), clock(), 360.0)) == before
    assert text_of(client.get(f"/audit/{NOVEMBER}")) == page_before

    # Kept again by the next hourly run, and frozen after the new moon: still the same, never twice.
    clock.now = datetime(2026, 11, 20, 20, 0)
    run_all_once(app)
    clock.now = datetime(2026, 12, 9, 1, 30)
    run_all_once(app)
    page_frozen = text_of(client.get(f"/audit/{NOVEMBER}"))
    assert "These figures were frozen" in page_frozen
    assert "Stewards walked 5 shifts and checked in 7 times" in page_frozen
    assert "Linden Street 3 6" in page_frozen and "All areas 5 7" in page_frozen


def test_shifts_reduced_before_the_worker_ever_kept_their_cycle_are_still_counted_once(app, clock):
    seed_november(app, clock)
    clock.now = datetime(2026, 11, 16, 12, 0)
    with app.app_context():
        cycle = lunar.cycle(NOVEMBER)
        assert audit.find(db.session, NOVEMBER) is None
        before = figures(audit.report(db.session, cycle, clock(), 360.0))
        expired = retention.expire_patrol_log(db.session, clock(), timedelta(days=2))
        db.session.commit()
        assert expired.shifts == 6  # five in November and Tern's in October
        assert figures(audit.report(db.session, cycle, clock(), 360.0)) == before
        audit.keep_tally(db.session, clock())
        db.session.commit()
        assert figures(audit.report(db.session, cycle, clock(), 360.0)) == before


def figures(report: audit.Report) -> dict:
    """What the audit page shows of patrols, check-ins and alerts."""
    return {"areas": report.areas, "shifts": report.shifts, "check_ins": report.check_ins,
            "overdue": report.overdue, "alerts": report.alerts}


def test_a_retention_that_is_no_number_of_days_is_refused_in_plain_words(app, runner):
    app.config["LOG_NOTE_RETENTION_DAYS"] = "a month"
    result = runner.invoke(args=["run-jobs"])
    assert result.exit_code == 0, result.output
    assert ("expire-patrol-log: not run: SAFEBENCH_LOG_NOTE_RETENTION_DAYS must be a number of days, at least 1 "
            "(it is 'a month')") in result.output
    assert "checkpoint: 0 pages left in the write-ahead log" in result.output
    app.config["LOG_NOTE_RETENTION_DAYS"] = 0
    assert "must be a number of days, at least 1 (it is 0)" in runner.invoke(args=["run-jobs"]).output


def test_the_worker_says_how_many_stewards_went_quiet_never_who(app, clock, caplog):
    make_member(app, "Kestrel", STEWARD, node="!a1b2c3d4")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    assert Handheld(app, KESTREL_NODE).send("ON Market by 6 Cobbold Row") == "on"
    with caplog.at_level(logging.INFO, logger="server"):
        for minutes in (26, 20):  # after an interval and its grace a ping; after a second interval the alert
            clock.advance(minutes=minutes)
            run_all_once(app)
    lines = [record.getMessage() for record in caplog.records]
    assert "overdue-check-ins: 1 overdue check-in(s): 1 pinged, 0 alerted" in lines
    assert "overdue-check-ins: 1 overdue check-in(s): 0 pinged, 1 alerted" in lines
    with app.app_context():
        assert [alert.kind for alert in alerts.open_alerts(db.session)] == [alerts.OVERDUE]
    assert not [line for line in lines if "Kestrel" in line or "Cobbold" in line or "a1b2c3d4" in line]

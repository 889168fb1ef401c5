"""The public audit of each lunar cycle: real new moons, totals only, small cells hidden, what we will revise."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from server.domain import (
    aid,
    alerts,
    audit,
    cases,
    complaints,
    drills,
    lunar,
    mediation,
    outbox,
    patrol,
    people,
    power_record,
)
from server.domain.people import DISPATCH, HOST, MEDIATOR, STEWARD, Member
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import login, make_member, submit, text_of
from tests.postgres import ids_reused
from tests.test_posters import a4_pages, need_chromium

# The new moons of 2026 as timeanddate.com and the US Naval Observatory publish them (UTC), with the minute
# PyEphem gives (published tables round to the nearest minute; these are PyEphem's, cut to the minute).
NEW_MOONS_2026 = [
    datetime(2026, 1, 18, 19, 51), datetime(2026, 2, 17, 12, 1), datetime(2026, 3, 19, 1, 23),
    datetime(2026, 4, 17, 11, 51), datetime(2026, 5, 16, 20, 0), datetime(2026, 6, 15, 2, 54),
    datetime(2026, 7, 14, 9, 43), datetime(2026, 8, 12, 17, 36), datetime(2026, 9, 11, 3, 26),
    datetime(2026, 10, 10, 15, 50), datetime(2026, 11, 9, 7, 2), datetime(2026, 12, 9, 0, 51),
]
PUBLISHED_DATES_2026 = [date(2026, 1, 18), date(2026, 2, 17), date(2026, 3, 19), date(2026, 4, 17),
                        date(2026, 5, 16), date(2026, 6, 15), date(2026, 7, 14), date(2026, 8, 12),
                        date(2026, 9, 11), date(2026, 10, 10), date(2026, 11, 9), date(2026, 12, 9)]
NOVEMBER = 332  # the lunation from the new moon of 9 Nov 2026 to that of 9 Dec 2026


def test_the_cycles_run_from_new_moon_to_new_moon_as_published_for_2026():
    moons = lunar.new_moons(2026)
    assert [moon.date() for moon in moons] == PUBLISHED_DATES_2026
    assert [moon.replace(second=0) for moon in moons] == NEW_MOONS_2026

    cycles = [lunar.cycle_at(moon) for moon in moons]
    assert [c.starts_at for c in cycles] == moons  # a new moon opens its cycle
    assert [c.number for c in cycles] == list(range(322, 334))
    for before, after in itertools.pairwise(cycles):
        assert before.ends_at == after.starts_at  # no gap, no overlap
        assert lunar.cycle_at(after.starts_at - timedelta(seconds=1)) == before
        assert timedelta(days=29.2) < before.ends_at - before.starts_at < timedelta(days=29.9)
    november = lunar.cycle(NOVEMBER)
    assert (november.starts_at.date(), november.ends_at.date()) == (date(2026, 11, 9), date(2026, 12, 9))
    assert lunar.cycle_at(datetime(2026, 11, 21, 20, 0)) == november


# -- a cycle of a patrol's life ---------------------------------------------------------------


def _at(clock, moment: datetime) -> datetime:
    clock.now = moment
    return moment


def _member(handle: str) -> Member:
    return people.get_member(db.session, handle)


def seed_november(app, clock) -> None:
    """Cycle 332 as it happened, through the services the pages, the radio and the scheduler use."""
    # Before the cycle: the cast, one shift in October, and a steward whose role runs out on 9 Nov at noon.
    _at(clock, datetime(2026, 10, 20, 12, 0))
    make_member(app, "Tern", STEWARD, term_days=20)
    with app.app_context():
        patrol.add_area(db.session, "Linden Street")
        patrol.add_area(db.session, "Market Square")
        patrol.start_shift(db.session, clock(), _member("Tern"), "Linden Street", patrol.SOURCE_WEB)
        patrol.end_shift(db.session, clock(), _member("Tern"), patrol.SOURCE_WEB)
        db.session.commit()
    _at(clock, datetime(2026, 11, 10, 8, 0))
    make_member(app, "Heron", HOST)
    make_member(app, "Plover", DISPATCH)
    make_member(app, "Ibis", MEDIATOR)
    for handle in ("Kestrel", "Wren", "Finch"):
        make_member(app, handle, STEWARD, password=None)

    with app.app_context():
        session = db.session
        # Three shifts on Linden Street, two check-ins each; one on Market Square with one; one nowhere published.
        now = _at(clock, datetime(2026, 11, 12, 18, 0))
        for handle in ("Kestrel", "Wren", "Finch"):
            patrol.start_shift(session, now, _member(handle), "Linden Street", patrol.SOURCE_RADIO)
            patrol.record_check_in(session, now + timedelta(minutes=20), _member(handle), patrol.SOURCE_RADIO)
            patrol.record_check_in(session, now + timedelta(minutes=40), _member(handle), patrol.SOURCE_RADIO)

        # Three SOS, answered after 2, 4 and 10 minutes, then resolved (and purged a week later).
        for minutes, handle in ((2, "Kestrel"), (4, "Wren"), (10, "Finch")):
            raised = now + timedelta(minutes=45)
            alert = alerts.raise_sos(session, raised, _member(handle), "Linden Street", patrol.SOURCE_RADIO)
            alerts.acknowledge(session, raised + timedelta(minutes=minutes), alert, _member("Plover"), "web")
            alerts.resolve(session, raised + timedelta(minutes=30), alert, _member("Plover"), "web", "all fine")
        for handle in ("Kestrel", "Wren", "Finch"):
            patrol.end_shift(session, now + timedelta(hours=2), _member(handle), patrol.SOURCE_RADIO)
        now = _at(clock, datetime(2026, 11, 12, 21, 0))
        patrol.start_shift(session, now, _member("Kestrel"), "Market Square", patrol.SOURCE_RADIO)
        patrol.record_check_in(session, now + timedelta(minutes=20), _member("Kestrel"), patrol.SOURCE_RADIO)
        patrol.end_shift(session, now + timedelta(minutes=30), _member("Kestrel"), patrol.SOURCE_RADIO)
        patrol.start_shift(session, now, _member("Wren"), "behind the garages", patrol.SOURCE_RADIO)
        patrol.end_shift(session, now + timedelta(minutes=30), _member("Wren"), patrol.SOURCE_RADIO)

        # Two arrests, confirmed (dispatch opened them): four people out after 20 h, one after 30 h.
        now = _at(clock, datetime(2026, 11, 13, 22, 0))
        plover = _member("Plover")
        first = cases.open_case(session, now, place="Linden Street", arrested=4, source=patrol.SOURCE_WEB,
                                reported_by=plover)
        second = cases.open_case(session, now, place="Market Square", arrested=1, source=patrol.SOURCE_WEB,
                                 reported_by=plover)
        cases.count_out(session, now + timedelta(hours=20), first, 4, plover)
        cases.count_out(session, now + timedelta(hours=30), second, 1, plover)

        # Three mediation requests, a mediator on each after 10, 20 and 30 minutes; one closed.
        now = _at(clock, datetime(2026, 11, 14, 10, 0))
        for minutes in (10, 20, 30):
            request = mediation.submit_request(session, now, what="Noise from the yard every night")
            mediation.assign(session, now + timedelta(minutes=minutes), request, _member("Ibis"))
        mediation.change_status(session, now + timedelta(hours=2), request, mediation.CLOSED)

        # The aid board: three offers (one taken up) and an ask.
        for kind in (aid.OFFER, aid.OFFER, aid.OFFER, aid.ASK):
            aid.post_aid(session, now, kind=kind, category="food", text="Soup on Sunday", area_id=None, days=3,
                         max_days=14)
        aid.close_by_poster(session, now + timedelta(hours=1), session.get(aid.AidPost, 1), aid.TAKEN)

        # A drill, ended after 15 minutes; a complaint; a log entry withdrawn; roles asked, countersigned, suspended.
        now = _at(clock, datetime(2026, 11, 15, 19, 0))
        heron = _member("Heron")
        drill = drills.start(session, now, drills.SOS, heron, "the bench")
        drills.end(session, now + timedelta(minutes=15), drill, heron)
        complaints.submit_complaint(session, now, what="The patrol was rude at the bus stop")
        entry = session.scalar(select(patrol.LogEntry).where(patrol.LogEntry.kind == patrol.SHIFT_START)
                               .order_by(patrol.LogEntry.id.desc()).limit(1))
        patrol.withdraw_entry(session, now, entry.id, heron, HOST, "entered twice by mistake")
        for action in ("role-granted", "role-granted", "role-countersigned", "role-suspended"):
            power_record.record(session, now, actor=heron, role=HOST, action=action, subject="Wren: steward",
                                reason="assembly 14 Nov, item 3")

        # The hub's radio on the air for 6 minutes in all.
        for minute in range(10):
            session.add(outbox.AirtimeUse(at=now + timedelta(minutes=minute), seconds=36.0, priority=0))

        # After the cycle: not counted in it.
        patrol.start_shift(session, datetime(2026, 12, 9, 1, 0), _member("Finch"), "Linden Street",
                           patrol.SOURCE_RADIO)
        session.commit()


def test_the_audit_of_a_cycle_counts_what_happened_hides_small_cells_and_outlives_the_purges(app, client, clock):
    seed_november(app, clock)
    # The worker keeps the audit's facts through the cycle, while the purges take what they must.
    _at(clock, datetime(2026, 11, 15, 20, 0))
    run_all_once(app)
    _at(clock, datetime(2026, 11, 30, 12, 0))
    run_all_once(app)
    with app.app_context():
        gone = {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
                for model in (alerts.Alert, outbox.AirtimeUse)}
        assert gone == {"alert": 0, "airtime_use": 0}, "the purges have run"
        assert db.session.scalar(select(func.count()).select_from(mediation.MediationRequest)
                                 .where(mediation.MediationRequest.status == mediation.CLOSED)) == 0
        assert audit.find(db.session, NOVEMBER).frozen_at is None

    # The first run after the new moon of 9 December freezes it.
    _at(clock, datetime(2026, 12, 9, 1, 30))
    run_all_once(app)
    with app.app_context():
        kept = audit.find(db.session, NOVEMBER)
        assert kept.frozen_at == datetime(2026, 12, 9, 1, 30)
        assert audit.find(db.session, NOVEMBER + 1).frozen_at is None

    page = text_of(client.get(f"/audit/{NOVEMBER}"))
    assert "Lunar cycle 332 ran from the new moon of Mon 09 Nov 2026 to the new moon of Wed 09 Dec 2026." in page
    assert "Stewards walked 5 shifts and checked in 7 times" in page
    assert "Linden Street 3 6" in page
    assert "Market Square fewer than 3 fewer than 3" in page
    assert "No published area fewer than 3 0" in page
    assert "All areas 5 7" in page
    assert "SOS and panic calls 3 3 4 min 00 s 10 min 00 s" in page
    assert "the first responder answered after 4 min 00 s in the middle case, and after 10 min 00 s at the slowest" in page
    assert "Arrests reported fewer than 3" in page
    assert "People taken (confirmed reports) 5" in page
    assert "People out within 24 h 4" in page
    assert "People out within 48 h 5" in page
    assert "Mediation requests opened 3" in page
    assert "Mediation requests closed fewer than 3" in page
    assert "Median time to a mediator 20 min 00 s" in page
    assert "Offers 3 fewer than 3 fewer than 3" in page  # posted, taken up, lapsed after their 3 days
    assert "Asks fewer than 3 0 fewer than 3" in page
    assert "Mock SOS, Sun 15 Nov 2026" in page and "15 min 00 s" in page
    assert "Roles asked for 2" in page and "Countersigned (took effect) 1" in page and "Suspended 1" in page
    assert "Lapsed 1" in page  # Tern's, on 9 Nov at noon; the others' lapse on 8 Dec, seen after the new moon
    assert "Entries withdrawn from the public log 1" in page
    assert "Complaints about the patrol opened fewer than 3" in page
    assert "on the air for 6 min 00 s of the" in page
    assert "These figures were frozen on Wed 09 Dec 2026" in page
    # Totals only: no handle, no place anyone typed, no word anyone wrote.
    for private in ("Kestrel", "Wren", "Finch", "Plover", "Ibis", "Heron", "Tern", "garages", "Noise",
                    "rude", "Soup", "entered twice", "all fine"):
        assert private not in page

    # The bench page links to this cycle and to the one just frozen.
    bench = client.get("/").get_data(as_text=True)
    assert 'href="/audit"' in bench and f'href="/audit/{NOVEMBER}"' in bench


@ids_reused
def test_an_alert_that_takes_the_id_of_a_purged_one_is_counted_too(app, client, clock):
    _at(clock, datetime(2026, 11, 12, 18, 0))
    make_member(app, "Plover", DISPATCH)
    for handle in ("Kestrel", "Wren"):
        make_member(app, handle, STEWARD, password=None)

    def sos(handle: str, answered_after: int) -> int:
        with app.app_context():
            now = clock()
            alert = alerts.raise_sos(db.session, now, _member(handle), "the bench", patrol.SOURCE_RADIO)
            alerts.acknowledge(db.session, now + timedelta(minutes=answered_after), alert, _member("Plover"), "web")
            alerts.resolve(db.session, now + timedelta(minutes=20), alert, _member("Plover"), "web", "fine")
            db.session.commit()
            return alert.id

    first_ids = [sos("Kestrel", 1), sos("Wren", 2)]
    _at(clock, datetime(2026, 11, 12, 20, 0))
    run_all_once(app)
    _at(clock, datetime(2026, 11, 21, 20, 0))
    run_all_once(app)  # both purged, a week after they were resolved
    assert sos("Kestrel", 3) in first_ids  # SQLite gives a purged last row's id again

    page = text_of(client.get("/audit"))
    assert "SOS and panic calls 3 3 2 min 00 s 3 min 00 s" in page


def test_one_sos_reads_aloud_as_fewer_than_3_and_nothing_in_the_grammar_tells_it_was_one(app, client, clock):
    _at(clock, datetime(2026, 11, 12, 18, 0))
    make_member(app, "Kestrel", STEWARD, password=None)
    with app.app_context():
        alerts.raise_sos(db.session, clock(), _member("Kestrel"), "the bench", patrol.SOURCE_RADIO)
        cases.open_case(db.session, clock(), place="the bench", arrested=1, source=patrol.SOURCE_WEB)
        db.session.commit()
    page = text_of(client.get("/audit"))
    assert "There were fewer than 3 SOS or panic calls." in page
    assert "SOS and panic calls fewer than 3 0 nothing to measure" in page
    assert "Arrest reports: fewer than 3, fewer than 3 of them confirmed by dispatch; of fewer than 3 people" in page
    assert " was " not in page.split("In short, to read aloud")[1].split("Patrols by area")[0]


def test_a_hub_off_for_a_whole_cycle_freezes_what_it_kept_when_it_comes_back(app, clock):
    _at(clock, datetime(2026, 10, 20, 12, 0))
    make_member(app, "Kestrel", STEWARD, password=None)
    with app.app_context():
        patrol.start_shift(db.session, clock(), _member("Kestrel"), None, patrol.SOURCE_RADIO)
        assert audit.keep_tally(db.session, clock()) == []
        db.session.commit()
    # Off from October's cycle (331) until 20 December, in cycle 333: November's (332) saw nothing.
    _at(clock, datetime(2026, 12, 20, 12, 0))
    with app.app_context():
        assert audit.keep_tally(db.session, clock()) == [NOVEMBER - 1]
        db.session.commit()
        assert audit.find(db.session, NOVEMBER - 1).frozen_at == clock()
        assert audit.find(db.session, NOVEMBER) is None
        assert audit.find(db.session, NOVEMBER + 1).frozen_at is None


def test_an_audit_counted_after_the_purges_without_the_worker_has_only_what_survived(app, client, clock):
    seed_november(app, clock)
    _at(clock, datetime(2026, 11, 30, 12, 0))
    with app.app_context():
        alerts.purge_resolved(db.session, clock(), timedelta(days=7))
        db.session.commit()
    # The cycle is not over: its page counts what the hub still has, and says the figures can still grow.
    page = text_of(client.get("/audit"))
    assert "It is still running" in page and "the figures can still grow" in page
    assert "SOS and panic calls 0 0 nothing to measure" in page
    assert "Stewards walked 5 shifts" in page


def test_hosts_write_what_we_will_revise_after_the_assembly_in_versions_on_the_record(app, client, clock):
    make_member(app, "Heron", HOST)
    make_member(app, "Kestrel", STEWARD)
    revise_page = f"/host/audit/{NOVEMBER - 1}/revise"

    steward = app.test_client()
    login(steward, "Kestrel")
    assert steward.get(revise_page).status_code == 403
    assert steward.post(revise_page, data={"text": "x", "decision": "y"}).status_code in (400, 403)

    login(client, "Heron")
    # The cycle running now is not audited yet.
    running = submit(client, f"/host/audit/{NOVEMBER}/revise", {"text": "More patrols", "decision": "assembly"})
    assert running.status_code == 400
    assert "This cycle is still running" in text_of(running)
    # The decision is required, next to its field.
    missing = submit(client, revise_page, {"text": "More patrols at night", "decision": ""})
    assert missing.status_code == 400 and "Name the assembly that decided it" in text_of(missing)

    done = submit(client, revise_page, {"text": "Two stewards on every night shift.\n\nAnswer SOS faster.",
                                        "decision": "assembly 12 Nov, item 2"})
    assert done.status_code == 200
    assert "Version 1 of what we will revise is published" in text_of(done)
    again = submit(client, revise_page, {"text": "Two stewards on every night shift.",
                                         "decision": "assembly 19 Nov, item 1: SOS item dropped"})
    assert again.status_code == 200

    page = text_of(app.test_client().get(f"/audit/{NOVEMBER - 1}"))  # as anyone on the bench WiFi
    assert "What we will revise Two stewards on every night shift. Version 2" in page
    assert "on the decision “assembly 19 Nov, item 1: SOS item dropped”" in page
    assert "Earlier versions of what we will revise Version 1" in page and "Answer SOS faster." in page  # the earlier version stays readable
    with app.app_context():
        kept = audit.find(db.session, NOVEMBER - 1)
        assert kept.frozen_at is not None  # written down on a frozen audit
        uses = [use for use in power_record.entries(db.session) if use.action == "audit-revised"]
        assert [(use.actor, use.subject, use.reason) for use in reversed(uses)] == [
            ("Heron", "audit of cycle 331: version 1", "assembly 12 Nov, item 2"),
            ("Heron", "audit of cycle 331: version 2", "assembly 19 Nov, item 1: SOS item dropped"),
        ]


def test_a_cycle_that_has_not_begun_or_does_not_exist_is_not_found(client):
    assert client.get(f"/audit/{NOVEMBER + 1}").status_code == 404
    assert client.get("/audit/999999").status_code == 404
    assert client.get(f"/audit/{NOVEMBER}").status_code == 200


# -- on paper -----------------------------------------------------------------------------------


def test_safebench_audit_writes_the_html_without_chromium(app, clock, runner, tmp_path, monkeypatch):
    seed_november(app, clock)
    _at(clock, datetime(2026, 12, 10, 9, 0))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no chromium on this PATH
    out = tmp_path / "print"
    done = runner.invoke(args=["audit", "--cycle", str(NOVEMBER), "--out", str(out)])
    assert done.exit_code == 0, done.output
    html = (out / "audit-cycle-332.html").read_text(encoding="utf-8")
    assert "Linden Street" in html and "fewer than 3" in html and "Kestrel" not in html
    assert "<link" not in html  # standalone: prints from any browser, nothing fetched
    assert "need it" not in done.stdout and "audit-cycle-332.pdf needs it" in done.output

    unknown = runner.invoke(args=["audit", "--cycle", str(NOVEMBER + 5)])
    assert unknown.exit_code != 0 and "has not begun yet" in unknown.output


def test_safebench_audit_prints_the_cycle_as_html_and_pdf(app, clock, runner, tmp_path):
    need_chromium()
    seed_november(app, clock)
    _at(clock, datetime(2026, 12, 10, 9, 0))
    out = tmp_path / "print"
    # In the process, on the story's clock; chromium is the real one.
    done = runner.invoke(args=["audit", "--cycle", str(NOVEMBER), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert a4_pages(out / "audit-cycle-332.pdf") >= 1
    assert not (out / "audit-cycle-332.png").exists()
    assert "audit-cycle-332.pdf: A4, ready to print" in done.output
    html = (out / "audit-cycle-332.html").read_text(encoding="utf-8")
    assert "Lunar cycle 332 ran from the new moon of" in html and "Market Square" in html

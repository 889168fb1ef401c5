"""The bench page: what a crowd scanning the QR code reads, and what reading it costs the hub.

The page reads everything in a few statements built once
(server/domain/bench_view.py) and shows what the domain services would:
counts, published areas, a handle only where its steward chose it, nothing
sealed. Anonymous visitors share one rendering; one with no cookie at all is
answered before Flask runs (server/web/caching.py). A logged-in visitor, or
one with a message waiting, always gets a fresh page. Counted here in SQL
statements, never in milliseconds (tests/benchmarks/bench_page.py times it).
"""

from __future__ import annotations

import base64
import json
import re
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from flask import request, request_started
from sqlalchemy import event, select

from server.domain import aid, audit, bench_view, cases, compact, complaints, lunar, patrol, people
from server.extensions import db
from server.web import caching
from tests.benchmarks import bench_page as bench_benchmark
from tests.helpers import FakeClock, login, make_app, make_member, submit, text_of

NIGHT = datetime(2026, 11, 21, 20, 0)
ROUNDING = 15  # PUBLIC_TIME_ROUNDING_MINUTES' default
UNCACHED_STATEMENTS = 5  # counts, on patrol, the log, the board, the audits
UNCACHED_STATEMENTS += 1  # issue 16: the task map's open public tasks (tasks.BENCH_TASKS)
UNCACHED_STATEMENTS += 1  # issue 16: the allies' vows in force, each with its last fulfilment (allies.BENCH_VOWS)


@contextmanager
def statements(app):
    """Every SQL statement the app sends to SQLite while the block runs."""
    sent: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def named(handle: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(handle)}\b", text) is not None


def add_what_the_bulk_seed_lacks(session, now: datetime) -> None:
    """Test setup: the cases every count and rule of the page must get right, on top of weeks of patrols."""
    on_patrol = list(session.scalars(select(patrol.Shift).where(patrol.Shift.ended_at.is_(None))
                                     .order_by(patrol.Shift.started_at)))
    # Two of the stewards out tonight chose to show their handle; the others are only counted.
    for shift in on_patrol[:2]:
        people.set_show_handle(session, shift.member, True, by=shift.member)
    # One steward with a second open shift elsewhere: still one steward, counted where they went first.
    market = session.scalar(select(patrol.Area).where(patrol.Area.name == "Market"))
    session.add(patrol.Shift(member_id=on_patrol[0].member_id, area=market, place="Market",
                             started_at=now - timedelta(minutes=5)))
    # The newest entries: one withdrawn with a reason (a gap), one hidden without, a drill (never public).
    newest = list(session.scalars(select(patrol.LogEntry).order_by(patrol.LogEntry.id.desc()).limit(4)))
    newest[1].public, newest[1].withdrawn_at = False, now
    newest[1].withdrawn_by, newest[1].withdrawal_reason = "the host", "it named a neighbour's door"
    newest[2].public = False
    session.add(patrol.LogEntry(at=now, kind=patrol.CHECK_IN, member_id=on_patrol[0].member_id, source="radio",
                                drill=True, public=True))
    # The newest aid post of all is open but past its date: the lapse job has not run yet.
    session.add(aid.AidPost(receipt_lookup="Z" * 16, poster_key=b"k" * 32, kind=aid.OFFER, category=aid.CATEGORIES[0],
                            text="Soup on Sundays, ask at the bench", status=aid.OPEN, created_at=now,
                            available_until=now - timedelta(hours=1)))
    # Arrests: open and confirmed (counted), a neighbour's report nobody confirmed, a drill, a closed case.
    for arrested, released, confirmed, drill, closed in ((3, 1, True, False, False), (5, 0, False, False, False),
                                                         (2, 0, True, True, False), (4, 4, True, False, True)):
        session.add(cases.ArrestCase(
            code=f"A{arrested}{released}", opened_at=now - timedelta(hours=3), source="radio", place="the square",
            arrested_at=now - timedelta(hours=3), arrested=arrested, released=released, drill=drill,
            confirmed_at=now - timedelta(hours=2) if confirmed else None,
            closed_at=now - timedelta(hours=1) if closed else None,
        ))
    # Complaints: two received lately, one open longer than a lunar cycle, two closed.
    for age_days, closed in ((1, False), (3, False), (40, False), (50, True), (10, True)):
        complaint = complaints.submit_complaint(session, now - timedelta(days=age_days),
                                                what="The steward at the market shouted at a teenager.")
        if closed:
            complaint.status, complaint.closed_at = complaints.CLOSED, now - timedelta(days=1)
    # The compact's second text, signed by three so far (the seed's 120 signed the first).
    session.add(compact.CompactVersion(number=2, text="The compact, as the assembly amended it.",
                                       decision="assembly, autumn", edited_at=now - timedelta(days=2)))
    session.flush()
    for mark in ("R.", "a neighbour at 14", "Sam"):
        compact.sign(session, now, mark, 2)
    # Audits kept of three ended cycles, and this one, still going.
    current = lunar.cycle_at(now).number
    for number in range(current - 3, current + 1):
        cycle = lunar.cycle(number)
        session.add(audit.LunarAudit(id=number, starts_at=cycle.starts_at, ends_at=cycle.ends_at,
                                     updated_at=min(now, cycle.ends_at), facts="{}"))


@pytest.fixture(scope="module")
def twenty_thousand(tmp_path_factory):
    """An instance with 20,000 log entries and 2,000 aid posts (the benchmark's seed), and every rule's case."""
    instance = tmp_path_factory.mktemp("bench") / "instance"
    clock = FakeClock(NIGHT)
    bench_benchmark.seed(instance, 20_000, 2_000, stewards=36, weeks=8, now=clock())
    app = make_app(instance, clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache", CACHE_NO_NULL_WARNING=True)
    with app.app_context():
        add_what_the_bulk_seed_lacks(db.session, clock())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return instance, clock


def hub(instance, clock, **config):
    settings = {"RATELIMIT_ENABLED": False, "CACHE_TYPE": "NullCache", "CACHE_NO_NULL_WARNING": True, **config}
    return make_app(instance, clock, **settings)


def test_the_bench_page_reads_what_the_domain_services_read(twenty_thousand):
    app = hub(*twenty_thousand)
    now = twenty_thousand[1]()
    with app.app_context():
        session = db.session
        page = bench_view.bench_page(session.connection(), now, ROUNDING)

        assert page.on_patrol == patrol.public_patrol(session)
        assert page.log == patrol.public_log(session, limit=8, rounding_minutes=ROUNDING)
        assert bench_view.public_log(session.connection(), 100, ROUNDING) == patrol.public_log(session, 100, ROUNDING)
        assert page.offers == [
            bench_view.BoardLine(post.id, post.kind_label, post.category_label, post.text,
                                 post.area.name if post.area else None)
            for post in aid.open_posts(session, now, limit=5)
        ]
        assert page.open_post_count == aid.count_open_posts(session, now)
        assert page.signatures == compact.signature_count(session)
        assert page.arrests == cases.public_counts(session)
        assert page.audits == [bench_view.AuditLink(kept.id, kept.ends_at)
                               for kept in audit.past_cycles(session, now, limit=2)]
        assert page.complaint_counts == complaints.public_counts(session, now)

    # And the rules hold in what came back, not only in agreement.
    assert page.on_patrol.total == 4 and len(page.on_patrol.shown) == 2
    assert page.arrests == cases.PublicCounts(3, 1)
    assert page.complaint_counts == complaints.PublicCounts(opened=5, closed=2, open=3, open_past_a_lunar_cycle=1)
    assert page.signatures == 3 and len(page.audits) == 2
    assert "Soup on Sundays" not in {line.text.split(",")[0] for line in page.offers}
    # The newest public entry, then the withdrawn one's gap; the one hidden without a reason, and the drill, are not there.
    assert page.log[0].kind == patrol.CHECK_IN and page.log[1].kind == "withdrawn"
    assert "it named a neighbour's door" in page.log[1].withdrawal and page.log[2].id < page.log[1].id - 1


def test_a_neighbour_reads_counts_shown_handles_and_no_hidden_one(twenty_thousand):
    app = hub(*twenty_thousand)
    with app.app_context():
        page = bench_view.bench_page(db.session.connection(), twenty_thousand[1](), ROUNDING)
        out_tonight = {shift.member.handle for shift in patrol.on_patrol(db.session)}
    bench = text_of(app.test_client().get("/"))

    assert f"{page.on_patrol.total} stewards on patrol" in bench
    assert f"Showing their handle: {', '.join(page.on_patrol.shown)}." in bench
    for handle in out_tonight - set(page.on_patrol.shown):
        assert not named(handle, bench)
    assert "Arrests still open: 3 taken, 1 released." in bench
    assert f"The aid board ({page.open_post_count} open)" in bench
    assert "3 neighbours have signed the current text" in bench
    assert "5 raised, 2 closed, 3 open, 1 of them open longer than a lunar cycle" in bench
    assert "An entry was withdrawn by the host: it named a neighbour's door" in bench
    assert "Soup on Sundays" not in bench  # open, but past its date


def test_an_uncached_bench_page_runs_five_statements_whatever_the_size_of_the_log(twenty_thousand):
    app = hub(*twenty_thousand)
    neighbour = app.test_client()
    neighbour.get("/")  # statements compiled once per process
    for _ in range(3):
        with statements(app) as sent:
            assert neighbour.get("/").status_code == 200
        assert len(sent) <= UNCACHED_STATEMENTS, sent
    with statements(app) as sent:
        assert neighbour.get("/log").status_code == 200
    assert len(sent) == 1, sent


@contextmanager
def flask_requests(app):
    """How many requests reached Flask itself (not answered in front of it) while the block runs."""
    seen: list[str] = []

    def started(_sender, **_extra) -> None:
        seen.append(request.path)

    request_started.connect(started, app)
    try:
        yield seen
    finally:
        request_started.disconnect(started, app)


def test_a_crowd_shares_one_rendering_and_a_cached_answer_runs_no_sql(twenty_thousand):
    app = hub(*twenty_thousand, CACHE_TYPE="SimpleCache", CACHE_DEFAULT_TIMEOUT=600)
    first = app.test_client().get("/")
    assert first.status_code == 200 and "no-store" not in first.headers.get("Cache-Control", "")
    # A neighbour who filled in a form carries a session cookie (its CSRF secret): still anonymous.
    returning = app.test_client()
    returning.get("/mediation/new")
    assert "session" in {cookie.key for cookie in returning._cookies.values()}

    with statements(app) as sent, flask_requests(app) as reached_flask:
        crowd = [app.test_client().get("/") for _ in range(30)]
        crowd.append(returning.get("/"))
    assert sent == [] and reached_flask == []
    for answer in crowd:
        assert answer.status_code == 200 and answer.get_data() == first.get_data()
        for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
            assert answer.headers[header] == first.headers[header]
        assert "no-store" not in answer.headers.get("Cache-Control", "")
        assert "Set-Cookie" not in answer.headers


def test_a_cookie_that_claims_a_login_or_is_not_one_of_ours_goes_to_flask_and_gets_the_public_page(twenty_thousand):
    app = hub(*twenty_thousand, CACHE_TYPE="SimpleCache", CACHE_DEFAULT_TIMEOUT=600)
    public = app.test_client().get("/").get_data()
    forged = base64.urlsafe_b64encode(json.dumps({"_user_id": "1.0", "unlock": "x"}).encode()).decode().rstrip("=")
    for cookie in (f"session={forged}.AAAA.BBBB", "session=garbage", "session=.eJzz", "remember_token=1|abc"):
        with flask_requests(app) as reached_flask:
            answer = app.test_client(use_cookies=False).get("/", headers={"Cookie": cookie})
        assert reached_flask == ["/"], cookie
        assert answer.status_code == 200 and answer.get_data() == public, cookie
    # Someone else's cookie on the same address is none of the hub's business.
    with flask_requests(app) as reached_flask:
        assert app.test_client(use_cookies=False).get("/", headers={"Cookie": "theme=dark"}).get_data() == public
    assert reached_flask == []


def story_hub(tmp_path, clock, **config):
    """A small hub: the Market area, Kestrel on patrol, Osprey hosting, the real cache for ten minutes."""
    app = hub(tmp_path / "instance", clock, **{"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 600, **config})
    make_member(app, "Osprey", people.HOST)
    make_member(app, "Kestrel", people.STEWARD, node="!a1b2c3d4")
    make_member(app, "Tern", people.STEWARD, node="!0000beef")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        patrol.start_shift(db.session, clock(), people.get_member(db.session, "Kestrel"), "Market", patrol.SOURCE_RADIO)
        db.session.commit()
    return app


def tern_goes_out(app, clock) -> None:
    with app.app_context():
        patrol.start_shift(db.session, clock(), people.get_member(db.session, "Tern"), "Market", patrol.SOURCE_RADIO)
        db.session.commit()


def test_a_logged_in_visitor_and_one_with_a_message_waiting_get_a_fresh_page(tmp_path):
    clock = FakeClock(NIGHT)
    app = story_hub(tmp_path, clock)
    assert "1 steward on patrol" in text_of(app.test_client().get("/"))
    tern_goes_out(app, clock)
    # The crowd's shared copy is not read again for ten minutes.
    assert "1 steward on patrol" in text_of(app.test_client().get("/"))

    host = app.test_client()
    login(host, "Osprey")
    with statements(app) as sent, flask_requests(app) as reached_flask:
        own = host.get("/")
    assert "2 stewards on patrol" in text_of(own) and sent and reached_flask == ["/"]
    login_cookie = next(cookie.value for cookie in host._cookies.values() if cookie.key == "session")
    assert "_user_id" in caching.session_keys(login_cookie)
    assert own.headers["Cache-Control"] == "no-store"

    # Logged out, with "You are logged out" waiting: the page that says so is rendered for them.
    with statements(app) as sent:
        goodbye = submit(host, "/host/", {}, action="/logout")
    assert goodbye.request.path == "/" and sent
    assert "You are logged out, on every device." in text_of(goodbye) and "2 stewards on patrol" in text_of(goodbye)
    # Their message shown once, they are a neighbour like any other again: the shared page.
    assert "1 steward on patrol" in text_of(host.get("/"))


def test_the_shared_page_lives_as_long_as_the_setting_says_then_is_read_again(tmp_path, monkeypatch):
    clock = FakeClock(NIGHT)
    app = story_hub(tmp_path, clock)
    moment = [1000.0]
    monkeypatch.setattr(caching, "monotonic", lambda: moment[0])
    assert "1 steward on patrol" in text_of(app.test_client().get("/"))
    tern_goes_out(app, clock)
    moment[0] += 599
    assert "1 steward on patrol" in text_of(app.test_client().get("/"))
    moment[0] += 2
    assert "2 stewards on patrol" in text_of(app.test_client().get("/"))


def test_with_the_cache_off_every_neighbour_gets_a_fresh_page(tmp_path):
    clock = FakeClock(NIGHT)
    app = story_hub(tmp_path, clock, CACHE_TYPE="NullCache")
    assert "1 steward on patrol" in text_of(app.test_client().get("/"))
    tern_goes_out(app, clock)
    assert "2 stewards on patrol" in text_of(app.test_client().get("/"))


def test_on_the_bench_wifi_a_cached_page_is_never_the_answer_to_another_site(tmp_path):
    clock = FakeClock(NIGHT)
    app = story_hub(tmp_path, clock, CAPTIVE_PORTAL=True, BENCH_URL="http://10.42.0.1/")
    for _ in range(2):
        page = app.test_client().get("/", headers={"Host": "10.42.0.1"})
        assert page.status_code == 200 and "1 steward on patrol" in text_of(page)
    probe = app.test_client().get("/", headers={"Host": "connectivitycheck.gstatic.com"})
    assert probe.status_code == 302 and probe.headers["Location"] == "http://10.42.0.1/"

    # Any name a phone makes up is the hub's own if it ends in .local: each costs a render, never memory.
    for number in range(caching.MAX_ANSWERS * 3):
        assert app.test_client().get("/", headers={"Host": f"phone{number}.local"}).status_code == 200
    assert len(caching.public_pages(app).answers) <= caching.MAX_ANSWERS


def test_the_session_cookie_is_read_as_flask_writes_it_compressed_or_not(tmp_path):
    app = hub(tmp_path / "instance", FakeClock(NIGHT))
    sign = app.session_interface.get_signing_serializer(app)
    small = sign.dumps({"csrf_token": "5f1c"})
    large = sign.dumps({"csrf_token": "a" * 600, "_flashes": [["message", "You are logged out."]]})
    assert not small.startswith(".") and large.startswith(".")  # Flask compresses what compression shortens
    assert caching.session_keys(small) == {"csrf_token"}
    assert caching.session_keys(large) == {"csrf_token", "_flashes"}
    for broken in ("", "abc", "a.b", "!!!.x.y", ".eJzz.x.y", f"{'A' * 9000}.x.y"):
        assert caching.session_keys(broken) is None


def test_the_bench_page_is_read_without_the_orm_so_its_first_visitor_sets_up_no_mapper(tmp_path):
    # Core statements alone (issue 14): the ORM's one-time setup of every mapper (4 MB of the web server)
    # waits for a page that needs it, instead of coming with the first neighbour who opens the bench page.
    import subprocess
    import sys

    from tests.processes import env_for, safebench

    instance = tmp_path / "instance"
    assert safebench(instance, "migrate").returncode == 0
    probe = """
from server import create_app
from server.domain.base import Base
app = create_app()
assert app.test_client().get("/").status_code == 200
print(sorted(mapper.class_.__name__ for mapper in Base.registry.mappers if mapper.configured))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                          env=env_for(instance), cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""Urgent things first on the hub's pages: where each role lands after login, what waits on whom, and the
host's warning while nobody may read what neighbours send (domain/waiting.py holds the rules)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from server.domain import complaints, patrol, sealing, waiting
from server.domain.people import ACCOUNTABILITY, CAPTAIN, CARE, DISPATCH, HOST, MEDIATOR, Member
from server.extensions import db
from server.web.access import holds, now

CASE_ROLES = (DISPATCH, CARE)
# What a host is told while nobody holds a role that reads a vault neighbours write into.
UNREAD = {
    sealing.CASES: _l("Nobody holds the dispatch or care ring role: nobody can read the arrests neighbours report. "
                      "Their reports wait sealed until the assembly gives someone one of these roles."),
    sealing.MEDIATION: _l("Nobody holds the mediator role: nobody can read neighbours' mediation requests. "
                          "They wait sealed until the assembly names a mediator."),
    sealing.COMPLAINTS: _l("Nobody holds the accountability circle role: nobody can read neighbours' concerns about "
                           "the patrol. They wait sealed until the assembly seats the circle."),
    sealing.AID: _l("Nobody holds the host role: nobody can pass aid messages on to the neighbours who posted."),
}


def host_landing() -> str:
    """The board, once it exists (issue 15, another part of the work), else the dashboard."""
    if "board.page" in current_app.view_functions:
        return url_for("board.page")
    return url_for("host.dashboard")


def landing_for(session: Session, member: Member, roles: set[str]) -> str:
    """Where ``member``'s work is, the most urgent first: open arrest cases, then the mediation queue, then
    complaints, then the host's board; with nothing waiting, a host's board, else their first role's page."""
    moment = now()
    pages = []
    if roles & set(CASE_ROLES):
        pages.append((url_for("cases.index"), lambda: waiting.open_arrest_cases(session) > 0))
    if MEDIATOR in roles:
        pages.append((url_for("mediation.queue"), lambda: waiting.new_mediation_requests(session) > 0))
    if ACCOUNTABILITY in roles:
        pages.append((url_for("complaints.queue"), lambda: complaints.waiting_for(session, moment, member) > 0))
    for page, has_work in pages:
        if has_work():
            return page
    if HOST in roles or not pages:
        # The board opens only to the log's roles: a steward alone (their tasks, their handle) lands on the dashboard.
        return host_landing() if roles & {HOST, DISPATCH, CAPTAIN} else url_for("host.dashboard")
    return pages[0][0]


@dataclass(frozen=True)
class Warning:
    vault: str
    text: str


def unread_warnings() -> list[Warning]:
    """For hosts, on every hub page: what neighbours send that nobody may read now. Read at most once per request."""
    if not holds(HOST):
        return []
    if "unread_warnings" not in g:
        g.unread_warnings = [Warning(vault, str(UNREAD[vault]))
                             for vault in waiting.unread_vaults(db.session, now())]
    return g.unread_warnings


def waiting_at_the_bench() -> waiting.WaitingWork | None:
    """Everything waiting on anyone, for hosts and the case roles' dashboards; None for the others."""
    if not holds(HOST, *CASE_ROLES):
        return None
    if "waiting_work" not in g:
        g.waiting_work = waiting.waiting_work(db.session, now())
    return g.waiting_work


def init_app(app: Flask) -> None:
    app.add_template_global(unread_warnings, "unread_warnings")
    app.add_template_global(waiting_at_the_bench, "waiting_at_the_bench")
    app.add_template_global(patrol.URGENT_KINDS, "urgent_kinds")

"""The host's board: the night at a glance on a laptop or a TV at the bench, readable across the room.

Everything on it is read by server/domain/board.py, which ``safebench board``
shares. The page listens to the live log's event stream (web/live.py) and,
on each new entry and once in a while besides (the clocks move without
one), fetches its panels again from ``/host/board/panels``: no protocol of
its own, and a reconnect is the stream's. Without JavaScript it is a plain
page that reloads itself.

The same roles that watch the live log see it, and sealed words (a log
entry's typed place and note) open only as they open on the live log.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from server.domain import board, patrol
from server.domain.people import DISPATCH, HOST
from server.extensions import db
from server.web.access import current_roles, holds, now, requires
from server.web.cases import CASE_ROLES
from server.web.host import LOG_ROLES
from server.web.live import LIVE_PAGE_POLICY

bp = Blueprint("board", __name__, url_prefix="/host")

REFRESH_S = 30  # without JavaScript the page reloads this often; with it, the panels are fetched as often


def _board() -> board.Board:
    return board.read_board(
        db.session, now(), board.BoardRules.from_config(current_app.config),
        hidden_kinds=patrol.kinds_hidden_from(current_roles()),
        # As in the banner on every hub page (web/alerts.py): a silent alert is for host and dispatch only.
        show_silent=holds(HOST, DISPATCH),
    )


def _panels_context() -> dict:
    return {"board": _board(), "opens_cases": holds(*CASE_ROLES), "refresh_s": REFRESH_S}


@bp.get("/board")
@requires(*LOG_ROLES)
def page() -> ResponseReturnValue:
    response = make_response(render_template("board/page.html", **_panels_context()))
    # Like the live log, this page alone (with it) runs the hub's own script and connects back to the hub.
    response.headers["Content-Security-Policy"] = LIVE_PAGE_POLICY
    return response


@bp.get("/board/panels")
@requires(*LOG_ROLES)
def panels() -> ResponseReturnValue:
    """The board's panels, for the page's script to put in place of the old ones."""
    return render_template("board/_panels.html", **_panels_context())


@bp.get("/board/alert-banner")
@requires(*LOG_ROLES)
def alert_banner() -> ResponseReturnValue:
    """The open-alerts banner of every hub page (host_base.html), for a page opened before the alert."""
    return render_template("host/_alert_banner.html")


@bp.get("/log/<int:entry_id>/alert")
@requires(*LOG_ROLES)
def entry_alert(entry_id: int) -> ResponseReturnValue:
    """From an SOS (or overdue, or silent alert) row of a log to its alert on the alerts page."""
    alert_id = board.alert_for_entry(db.session, entry_id, hidden_kinds=patrol.kinds_hidden_from(current_roles()))
    if alert_id is None:
        flash(_("That alert is no longer kept: resolved alerts are deleted after a few days."), "warning")
        return redirect(url_for("alerts.page"))
    return redirect(url_for("alerts.page", _anchor=f"alert-{alert_id}"))


@bp.app_template_global("alert_entry_kinds")
def alert_entry_kinds() -> tuple[str, ...]:
    """The log entries a page links to their alert (board.entry_alert) rather than showing the code as a note."""
    return tuple(board.ALERT_KINDS_OF_ENTRY)

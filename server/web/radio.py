"""The radio as the hub's hosts see it: the bridge's health, the outbox, airtime, strangers.

The bridge is a separate process; everything here is read from the rows it
keeps current, so a page never waits on the radio. Every hub page carries a
banner when the radio is simulated or the bridge has gone quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import BooleanField, TextAreaField
from wtforms.validators import DataRequired, Length

from radio_bridge.airtime import HOUR, duty_cycle_budget, legal_duty_cycle
from server.domain import alerts, outbox, people, radio
from server.domain.errors import DomainError
from server.domain.outbox import OutboxMessage
from server.domain.people import CAPTAIN, DISPATCH, HOST
from server.domain.radio import BridgeStatus
from server.domain.radio_text import (
    BELL,
    PACKET_LIMIT,
)
from server.extensions import db
from server.web.access import holds, now, requires, save
from server.web.forms import attach_error, status_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_babel import ngettext

bp = Blueprint("radio", __name__, url_prefix="/host")

VIEW_ROLES = (HOST, DISPATCH, CAPTAIN)
SEND_ROLES = (HOST, DISPATCH)
MAX_BROADCAST = 500
RECENT_MESSAGES = 50

# Domain field names that differ from the form's.
BROADCAST_FIELDS = {"message": "text", "priority": "urgent"}


class BroadcastForm(FlaskForm):
    text = TextAreaField(
        lazy_gettext("Message"),
        validators=[
            DataRequired(message=lazy_gettext("Please fill in the message.")),
            Length(max=MAX_BROADCAST, message=lazy_gettext("That is too long: at most %(max)d characters.")),
        ],
    )
    urgent = BooleanField(lazy_gettext("Urgent: goes before everything else, may use the urgent reserve, and handhelds buzz"))


# -- the bridge's status, once per request ------------------------------------


def _bridge_status() -> BridgeStatus | None:
    """The status row, read at most once per request (the banner and the page share it)."""
    if "bridge_status" not in g:
        g.bridge_status = radio.bridge_status(db.session)
    return g.bridge_status


@dataclass(frozen=True)
class BridgeBanner:
    """What every hub page must say about the radio: nothing, when all is well."""

    simulated: bool
    silent: bool
    # No bridge has ever written its status on this hub.
    never_ran: bool
    silent_since: datetime | None
    disconnected_since: datetime | None
    last_error: str | None

    @property
    def shown(self) -> bool:
        return self.simulated or self.silent or self.disconnected_since is not None


def bridge_banner() -> BridgeBanner:
    status = _bridge_status()
    silent = radio.bridge_is_silent(status, now())
    disconnected = status is not None and not silent and not status.connected
    return BridgeBanner(
        simulated=status is not None and status.simulated,
        silent=silent,
        never_ran=status is None,
        silent_since=status.heartbeat_at if status is not None else None,
        disconnected_since=status.since if disconnected else None,
        last_error=status.last_error if status is not None else None,
    )


# -- the radio page -----------------------------------------------------------


@dataclass(frozen=True)
class Airtime:
    """The hub radio's own airtime in the last hour, against what it may use."""

    used_s: float
    budget_s: float
    fraction: float
    region: str | None
    legal: float | None
    urgent_reserve: float

    @property
    def percent(self) -> float:
        return 100 * self.used_s / self.budget_s

    @property
    def reserve_s(self) -> float:
        return self.budget_s * self.urgent_reserve

    @property
    def routine_s(self) -> float:
        """Where routine messages stop, leaving the rest to urgent ones."""
        return self.budget_s - self.reserve_s

    @property
    def routine_waiting(self) -> bool:
        return self.used_s >= self.routine_s


@dataclass(frozen=True)
class MessageRow:
    message: OutboxMessage
    destination: str
    text: str
    bell: bool


def _airtime(session: Session, moment: datetime, status: BridgeStatus | None) -> Airtime:
    region = status.region if status is not None else None
    fraction = float(current_app.config["RADIO_AIRTIME_BUDGET"])
    used = sum(seconds for _, seconds, _ in outbox.airtime_since(session, moment - timedelta(seconds=HOUR)))
    return Airtime(
        used_s=used,
        budget_s=duty_cycle_budget(region or "UNSET", fraction),
        fraction=fraction,
        region=region,
        legal=legal_duty_cycle(region) if region else None,
        urgent_reserve=float(current_app.config["RADIO_URGENT_RESERVE"]),
    )


# The dedupe keys of the bridge's answers to PAY and GOT (radio_bridge/inbound.py).
LEDGER_REPLIES = ("pay-", "got-")


def _message_rows(session: Session, moment: datetime) -> tuple[list[MessageRow], list[MessageRow]]:
    """(failed, recent): failed messages first and on their own, then the latest of the rest."""
    handles = {m.node_num: m.handle for m in people.list_members(session) if m.node_num is not None}
    # What goes to dispatch radios alone (a silent duress alert, case reminders) is
    # for dispatch and hosts to read: a captain sees that it went, not what it said.
    hidden = set() if holds(*SEND_ROLES) else set(alerts.dispatch_nodes(session, moment))

    def row(message: OutboxMessage) -> MessageRow:
        if message.is_broadcast:
            destination = "everyone"
        else:
            node_id = people.format_node_id(message.destination)
            handle = handles.get(message.destination)
            destination = f"{handle} ({node_id})" if handle else node_id
        # The bell is a control character: shown as a word, never sent to a browser.
        text = "(for dispatch only)" if message.destination in hidden else message.text.replace(BELL, "")
        if (message.dedupe_key or "").startswith(LEDGER_REPLIES):
            # Who paid whom, and how much, is the two sides' business: the radio's keepers see that it went.
            text = _("(a ledger reply, for its steward only)")
        return MessageRow(message, destination, text, BELL in message.text)

    # Failed messages are what the host must not miss: all kept ones, however old.
    failed = [row(m) for m in outbox.recent(session, limit=None, failed=True)]
    rest = [row(m) for m in outbox.recent(session, limit=RECENT_MESSAGES, failed=False)]
    return failed, rest


def _radio_page(form: BroadcastForm) -> ResponseReturnValue:
    moment = now()
    status = _bridge_status()
    failed, recent = _message_rows(db.session, moment)
    page = render_template(
        "radio/status.html",
        form=form,
        status=status,
        silent=radio.bridge_is_silent(status, moment),
        node_id=people.format_node_id(status.node_num) if status and status.node_num is not None else None,
        depth=outbox.depth_by_priority(db.session),
        airtime=_airtime(db.session, moment, status),
        failed=failed,
        recent=recent,
        strangers=radio.unknown_senders(db.session),
        format_node_id=people.format_node_id,
        max_broadcast=MAX_BROADCAST,
        packet_limit=PACKET_LIMIT,
    )
    return page, status_for(form)


@bp.get("/radio")
@requires(*VIEW_ROLES)
def status() -> ResponseReturnValue:
    return _radio_page(BroadcastForm(formdata=None))


def _queue_broadcast(session: Session, moment: datetime, text: str, urgent: bool) -> list[OutboxMessage]:
    priority = outbox.URGENT if urgent else outbox.NORMAL
    return outbox.queue_message(session, moment, text, priority=priority, bell=urgent)


@bp.post("/radio/broadcast")
@requires(*SEND_ROLES)
def broadcast() -> ResponseReturnValue:
    form = BroadcastForm()
    if form.validate_on_submit():
        moment, urgent = now(), bool(form.urgent.data)
        try:
            messages = save(lambda session: _queue_broadcast(session, moment, form.text.data, urgent))
        except DomainError as error:
            attach_error(form, error, fields=BROADCAST_FIELDS)
        else:
            if urgent:
                flash(ngettext("Queued for everyone on the patrol channel as urgent, with the bell. The bridge "
                               "sends it in its next free slot.",
                               "Queued for everyone on the patrol channel as urgent, with the bell in %(num)d "
                               "numbered parts. The bridge sends it in its next free slot.", len(messages)))
            else:
                flash(ngettext("Queued for everyone on the patrol channel as normal. The bridge sends it in its "
                               "next free slot.",
                               "Queued for everyone on the patrol channel as normal in %(num)d numbered parts. "
                               "The bridge sends it in its next free slot.", len(messages)))
            if radio.bridge_is_silent(_bridge_status(), moment):
                flash(_("The radio bridge is silent: the message waits in the outbox until it runs."), "warning")
            return redirect(url_for("radio.status"))
    return _radio_page(form)


def init_app(app: Flask) -> None:
    # A function, not a context processor: only the hub pages that show the
    # banner ask, and public pages never touch the radio's rows.
    app.add_template_global(bridge_banner, "bridge_banner")

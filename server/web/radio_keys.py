"""Radio keys on the stewards page: a host pins, confirms or refuses the key that proves a steward's radio.

The hub trusts ACK, CLR, OFF and STATUS's names over the air only from a
direct message carrying the key pinned here (server/domain/radio_trust.py).
A key heard on the air is offered, never trusted by itself: the host reads
its fingerprint with the steward, off the steward's own app, and confirms.
Every decision, and every refused attempt on the air, is in the record shown
beside them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from server.domain import people, radio_trust
from server.domain.errors import DomainError
from server.domain.people import HOST, Member
from server.extensions import db
from server.web.access import holds, now, requires, save
from flask_babel import lazy_gettext

bp = Blueprint("radio_keys", __name__, url_prefix="/host/stewards")


class PinKeyForm(FlaskForm):
    key = StringField(lazy_gettext("Radio key"), validators=[DataRequired(lazy_gettext("Paste the key from the steward's app.")),
                                               Length(max=64, message=lazy_gettext("A radio key is 44 characters."))])


def _back(member: Member) -> ResponseReturnValue:
    return redirect(url_for("host.stewards") + f"#radio-key-{member.id}")


def _decide(member_id: int, work: Any, done: str) -> ResponseReturnValue:
    member = db.get_or_404(Member, member_id)
    try:
        save(lambda session: work(session, now(), member, by=current_user.member))
    except DomainError as error:
        flash(error.message, "error")
    else:
        flash(done.format(handle=member.handle))
    return _back(member)


@bp.post("/<int:member_id>/key/confirm")
@requires(HOST)
def confirm_key(member_id: int) -> ResponseReturnValue:
    return _decide(member_id, radio_trust.confirm_heard_key,
                   "{handle}'s radio key is pinned: their direct messages to the hub now count as theirs.")


@bp.post("/<int:member_id>/key/refuse")
@requires(HOST)
def refuse_key(member_id: int) -> ResponseReturnValue:
    return _decide(member_id, radio_trust.refuse_heard_key, "The key heard for {handle}'s node is refused.")


@bp.post("/<int:member_id>/key")
@requires(HOST)
def pin_key(member_id: int) -> ResponseReturnValue:
    form = PinKeyForm()
    member = db.get_or_404(Member, member_id)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return _back(member)
    key = form.key.data
    return _decide(member_id, lambda session, moment, who, by: radio_trust.pin_key(session, moment, who, key, by=by),
                   "{handle}'s radio key is pinned.")


def radio_keys_panel() -> dict[str, Any]:
    """What the stewards page shows of radio keys: each radio's state and the recent record."""
    members = [m for m in people.list_members(db.session) if m.node_num is not None]
    return {
        "members": members,
        "events": radio_trust.recent_events(db.session, limit=30),
        "fingerprint": radio_trust.fingerprint,
        "can_decide": holds(HOST),
    }


def init_app(app: Flask) -> None:
    @app.context_processor
    def inject_radio_keys() -> dict[str, Any]:
        return {"radio_keys_panel": radio_keys_panel}

"""The federation page for hosts, and a steward's own choice to roam.

Hosts see this bench's fingerprint, the benches heard and trusted, their
last message, what was received and sent, and the messages dropped by
reason; they confirm a bench's fingerprint (a second host countersigns),
revoke one, and say which of our areas border it. The rules live in
``server.domain.federation``.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from server.domain import federation, patrol, people
from server.domain.errors import DomainError
from server.domain.people import Member
from server.extensions import db
from server.web.access import now, requires, save
from server.web.caching import forget_public_pages

bp = Blueprint("federation", __name__)


def _member_or_404(member_id: int) -> federation.FederationMember:
    member = db.session.get(federation.FederationMember, member_id)
    if member is None:
        abort(404)
    return member


def _me() -> Member:
    return db.session.get(Member, current_user.id)


@bp.get("/host/federation")
@requires(people.HOST)
def page() -> ResponseReturnValue:
    return render_template(
        "federation/host.html", bench=federation.this_bench(db.session), members=federation.members(db.session),
        drops=federation.drop_counts(db.session), received=federation.recent_received(db.session),
        sent=federation.recent_sent(db.session), areas=patrol.list_areas(db.session), me=_me(),
        kinds=federation.KINDS, reasons=federation.DROP_REASONS, waiting=len(federation.pending(db.session, now())))


def _decide(member_id: int, work, done) -> ResponseReturnValue:  # noqa: ANN001
    """A host's decision on a bench: ``work(session, member, me)``, then ``done(member)`` or the refusal flashed."""
    member = _member_or_404(member_id)
    try:
        save(lambda session: work(session, session.get(federation.FederationMember, member.id),
                                  session.get(Member, current_user.id)))
    except DomainError as error:
        flash(error.message, "error")
    else:
        flash(done(member))
    return redirect(url_for("federation.page") + f"#bench-{member_id}")


@bp.post("/host/federation/<int:member_id>/confirm")
@requires(people.HOST)
def confirm(member_id: int) -> ResponseReturnValue:
    said = (request.form.get("fingerprint") or "")[:100]
    return _decide(member_id, lambda s, m, me: federation.confirm(s, now(), m, said, by=me),
                   lambda member: _("%(name)s is trusted: its messages are acted on from now.", name=member.name)
                   if member.is_trusted else
                   _("Fingerprint confirmed. The bench is trusted once a second host has confirmed it too."))


@bp.post("/host/federation/<int:member_id>/revoke")
@requires(people.HOST)
def revoke(member_id: int) -> ResponseReturnValue:
    reason = (request.form.get("reason") or "")[:400]
    return _decide(member_id, lambda s, m, me: federation.revoke(s, now(), m, reason=reason, by=me),
                   lambda member: _("Revoked: nothing that bench signs is acted on any more."))


@bp.post("/host/federation/<int:member_id>/forget")
@requires(people.HOST)
def forget(member_id: int) -> ResponseReturnValue:
    return _decide(member_id, lambda s, m, me: federation.forget(s, now(), m, by=me),
                   lambda member: _("That bench is off the list."))


@bp.post("/host/federation/<int:member_id>/areas")
@requires(people.HOST)
def areas(member_id: int) -> ResponseReturnValue:
    chosen = [name[:40] for name in request.form.getlist("area")][:federation.MAX_AREAS]
    return _decide(member_id, lambda s, m, me: federation.set_neighbour_areas(s, now(), m, chosen, by=me),
                   lambda member: _("Saved: an SOS or arrest in these areas is sent to that bench."))


# -- a steward's own choice ------------------------------------------------------------


@bp.app_template_global()
def roaming_choice(member: Member) -> dict | None:
    """For the dashboard: whether this bench federates, and whether ``member`` chose to roam (None: no federation)."""
    if federation.this_bench(db.session) is None:
        return None
    return {"roams": federation.roaming_consent(db.session, member) is not None,
            "ready": member.node_num is not None and bool(member.radio_key)}


@bp.post("/me/roaming")
@requires()
def roaming() -> ResponseReturnValue:
    """The member's own choice: their handle, node and radio key go to the federation's benches, or not."""
    choice = request.form.get("roam")
    if choice not in ("0", "1"):
        flash(_("Please choose to roam or not."), "error")
        return redirect(url_for("host.dashboard") + "#roaming")
    save(lambda session: federation.set_roaming(session, now(), session.get(Member, current_user.id), choice == "1"))
    forget_public_pages()
    flash(_("The other benches of the federation will know your radio within minutes.") if choice == "1"
          else _("The other benches will forget your radio within minutes."))
    return redirect(url_for("host.dashboard") + "#roaming")

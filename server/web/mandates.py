"""The public mandates page: who holds which role, since and until when, on which assembly decision.

Anyone on the bench WiFi reads it; a role-holder who is logged in also sees
the recall buttons (ask to suspend a role, confirm another's ask) and their
own choice of appearing by handle or as "a steward".
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from server.domain import mandates, people
from server.domain.errors import DomainError
from server.domain.people import Member
from server.extensions import db
from server.web.access import holds, now, public, requires, save
from server.web.forms import attach_error, status_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("mandates", __name__)


class SuspendForm(FlaskForm):
    """One per role in force, so it carries a prefix; the app-wide CSRF check covers it."""

    class Meta:
        csrf = False

    reason = TextAreaField(lazy_gettext("Why suspend it until the assembly"), validators=[
        DataRequired(message=lazy_gettext("Please say why: the second role-holder and the assembly read it.")),
        Length(max=mandates.MAX_SUSPENSION_REASON, message=lazy_gettext("That is too long: at most %(max)d characters.")),
    ])


def _suspend_form(assignment_id: int, formdata=None) -> SuspendForm:  # noqa: ANN001
    return SuspendForm(formdata=formdata, prefix=f"suspend-{assignment_id}")


def _page(failed: tuple[int, SuspendForm] | None = None) -> ResponseReturnValue:
    moment = now()
    rows = mandates.public_mandates(db.session, moment)
    me = current_user.member if current_user.is_authenticated and holds() else None
    forms = {}
    if me is not None:
        forms = {m.assignment_id: _suspend_form(m.assignment_id) for m in rows
                 if m.state == "in force" and not m.suspension_asked and m.member_id != me.id}
        if failed:
            forms[failed[0]] = failed[1]
    page = render_template("mandates/page.html", rows=rows, me=me, suspend_forms=forms, moment=moment,
                           role_labels=people.ROLE_LABELS, role_nouns=people.ROLE_NOUNS,
                           my_roles=sorted({m.role for m in rows if me is not None and m.member_id == me.id}))
    return page, status_for(failed[1]) if failed else 200


@bp.get("/mandates")
@public
def page() -> ResponseReturnValue:
    return _page()


def _me(session: Session) -> Member:
    return session.get(Member, current_user.id)


def _assignment(assignment_id: int) -> int:
    if db.session.get(people.RoleAssignment, assignment_id) is None:
        abort(404)
    return assignment_id


@bp.post("/mandates/<int:assignment_id>/suspend")
@requires()
def ask_suspension(assignment_id: int) -> ResponseReturnValue:
    _assignment(assignment_id)
    form = _suspend_form(assignment_id, formdata=request.form)
    if form.validate():
        try:
            assignment = save(lambda session: mandates.ask_suspension(
                session, now(), people.get_assignment(session, assignment_id), by=_me(session),
                reason=form.reason.data))
        except DomainError as error:
            attach_error(form, error)
        else:
            flash(_("You asked to suspend %(handle)s's %(role)s role. It is suspended when a second "
                    "role-holder confirms it.",
                    handle=assignment.member.handle, role=people.ROLE_LABELS[assignment.role]))
            return redirect(url_for("mandates.page") + f"#mandate-{assignment_id}")
    return _page(failed=(assignment_id, form))


@bp.post("/mandates/<int:assignment_id>/confirm-suspension")
@requires()
def confirm_suspension(assignment_id: int) -> ResponseReturnValue:
    _assignment(assignment_id)
    try:
        assignment = save(lambda session: mandates.confirm_suspension(
            session, now(), people.get_assignment(session, assignment_id), by=_me(session)))
    except DomainError as error:
        flash(error.message, "error")
    else:
        flash(_("%(handle)s's %(role)s role is suspended from now until the assembly ends or restores it.",
                handle=assignment.member.handle, role=people.ROLE_LABELS[assignment.role]))
    return redirect(url_for("mandates.page") + f"#mandate-{assignment_id}")


@bp.post("/mandates/me")
@requires()
def appearance() -> ResponseReturnValue:
    as_role = request.form.get("appears_as_role") == "1"
    save(lambda session: mandates.set_appearance(session, _me(session), as_role))
    flash(_("The mandates page now shows your role instead of your handle.") if as_role
          else _("The mandates page now shows your handle."))
    return redirect(url_for("mandates.page"))

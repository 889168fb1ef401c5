"""The allies: the public page of every ally and its vow, and the hosts' page that records them.

Anyone reads /allies (name, public place, vow, hours, area, open now). Hosts
record allies and their vows on the assembly's decision, countersign
another host's vow, change one by a new decision, withdraw, and mark a vow
kept; the rules live in ``server.domain.allies``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from server.domain import allies, patrol, people
from server.domain.errors import DomainError
from server.domain.people import Member
from server.extensions import db
from server.web.access import now, public, requires, save
from server.web.caching import forget_public_pages, public_page, share_for_at_most
from server.web.forms import attach_error, check_each, status_for
from server.web.roles import decided_on_field, decision_field, place_field

bp = Blueprint("allies", __name__)

ALLY_FIELDS = {"organisation name": "name", "public place": "place", "endorsed on": "endorsed_on",
               "organisation": "organisation"}
VOW_FIELDS = {"vow": "text", "hours": "hours", "kind": "kind", "area": "area", "assembly decision": "decision",
              "decision date": "decided_on", "decision place": "decision_place"}
FULFILMENT_FIELDS = {"day fulfilled": "on", "what happened": "line"}


def _at_most(limit: int) -> Length:
    return Length(max=limit, message=lazy_gettext("That is too long: at most %(max)d characters."))


def _required(message: str) -> DataRequired:
    return DataRequired(message=message)


class AllyForm(FlaskForm):
    name = StringField(lazy_gettext("Organisation's name"), validators=[
        _required(lazy_gettext("Please give the organisation's name.")), _at_most(allies.MAX_NAME)])
    place = StringField(lazy_gettext("Its public place"), validators=[
        _required(lazy_gettext("Please give its public place: the shop front or the door people come to.")),
        _at_most(allies.MAX_PLACE)])
    endorsed_on = StringField(lazy_gettext("Day it endorsed the compact"), validators=[
        _required(lazy_gettext("Please give the day it endorsed the compact.")), _at_most(10)],
        render_kw={"type": "date"})
    organisation = BooleanField(lazy_gettext("This is an organisation open to the public, not a private person "
                                             "or a home"))


class VowForm(FlaskForm):
    text = StringField(lazy_gettext("The vow"), validators=[
        _required(lazy_gettext("Please write the vow.")), _at_most(allies.MAX_VOW)])
    kind = SelectField(lazy_gettext("What it offers"), choices=[])
    hours = StringField(lazy_gettext("Hours"), validators=[
        _required(lazy_gettext("Please give the hours.")), _at_most(allies.MAX_HOURS)])
    crisis_only = BooleanField(lazy_gettext("Only in a crisis"))
    area = SelectField(lazy_gettext("Area"), choices=[])
    decided_on = decided_on_field()
    decision_place = place_field()
    decision = decision_field()
    replaces = HiddenField()


class FulfilmentForm(FlaskForm):
    class Meta:
        csrf = False  # one per vow, with a prefix; the app-wide CSRF check covers it

    on = StringField(lazy_gettext("Day"), validators=[_required(lazy_gettext("Please give the day.")), _at_most(10)],
                     render_kw={"type": "date"})
    line = StringField(lazy_gettext("What happened, naming no one"), validators=[
        _required(lazy_gettext("Please say what happened.")), _at_most(allies.MAX_LINE)])


class WithdrawForm(FlaskForm):
    class Meta:
        csrf = False

    reason = StringField(lazy_gettext("Why withdraw it"), validators=[
        _required(lazy_gettext("Please say why: the assembly reads it.")), _at_most(allies.MAX_REASON)])


def _zone():  # noqa: ANN202
    return allies.zone_of(current_app.config["TIMEZONE"])


def _me() -> Member:
    return db.session.get(Member, current_user.id)


# -- the public page ---------------------------------------------------------------


@bp.get("/allies")
@public
@public_page
def public() -> str:
    moment = now()
    vows = allies.public_vows(db.session, moment, _zone())
    change = allies.next_change(vows, moment, _zone())
    if change is not None:
        share_for_at_most((change - moment).total_seconds())  # "open now" is true until then only
    return render_template("allies/public.html", vows=vows, fulfilled=allies.recent_fulfilments(db.session, moment),
                           moment=moment)


# -- the hosts' page ---------------------------------------------------------------


def _vow_form(formdata=None, **data) -> VowForm:  # noqa: ANN001, ANN003
    form = VowForm(formdata=formdata, **data)
    form.kind.choices = list(allies.KIND_LABELS.items())
    form.area.choices = [(area.name, area.name) for area in patrol.list_areas(db.session)]
    return form


def _page(*, ally_form: AllyForm | None = None, failed: tuple[str, int, FlaskForm] | None = None,
          status: int = 200) -> ResponseReturnValue:
    listed = allies.current_allies(db.session)
    fulfil = {vow.id: FulfilmentForm(prefix=f"kept-{vow.id}") for ally in listed for vow in ally.vows if vow.in_force}
    withdraw = {vow.id: WithdrawForm(prefix=f"withdraw-{vow.id}") for ally in listed for vow in ally.vows
                if vow.withdrawn_at is None}
    if failed:
        (fulfil if failed[0] == "kept" else withdraw)[failed[1]] = failed[2]
    me = _me()
    return render_template("allies/host.html", allies_=listed, ally_form=ally_form or AllyForm(), fulfil=fulfil,
                           withdraw=withdraw, me=me, areas=patrol.list_areas(db.session),
                           kinds=allies.KIND_LABELS), status


@bp.get("/host/allies")
@requires(people.HOST)
def host_page() -> ResponseReturnValue:
    return _page()


@bp.post("/host/allies")
@requires(people.HOST)
def record_ally() -> ResponseReturnValue:
    form = AllyForm()
    valid = form.validate()
    # Every refusal in one answer: the contact in the name or the place, and the box not ticked.
    checks = {
        "name": lambda: allies.public_words(form.name.data, field="organisation name", max_length=allies.MAX_NAME),
        "place": lambda: allies.public_words(form.place.data, field="public place", max_length=allies.MAX_PLACE),
        "organisation": lambda: allies.check_organisation(form.organisation.data),
    }
    if check_each(form, checks, ALLY_FIELDS) and valid:
        try:
            ally = save(lambda session: allies.record_ally(
                session, now(), name=form.name.data, place=form.place.data, endorsed_on=form.endorsed_on.data,
                organisation=form.organisation.data, by=session.get(Member, current_user.id)))
        except DomainError as error:
            attach_error(form, error, ALLY_FIELDS)
        else:
            flash(_("%(name)s is recorded as an ally. Now record its vow.", name=ally.name))
            return redirect(url_for("allies.new_vow", ally_id=ally.id))
    return _page(ally_form=form, status=status_for(form))


def _ally_or_404(ally_id: int) -> allies.Ally:
    ally = db.session.get(allies.Ally, ally_id)
    if ally is None or ally.withdrawn_at is not None:
        abort(404)
    return ally


def _vow_or_404(vow_id: int) -> allies.AllyVow:
    vow = db.session.get(allies.AllyVow, vow_id)
    if vow is None:
        abort(404)
    return vow


@bp.route("/host/allies/<int:ally_id>/vow", methods=["GET", "POST"])
@requires(people.HOST)
def new_vow(ally_id: int) -> ResponseReturnValue:
    ally = _ally_or_404(ally_id)
    replacing = None
    if request.method == "GET":
        replacing = db.session.get(allies.AllyVow, request.args.get("replaces", type=int) or 0)
        if replacing is not None and replacing.ally_id == ally.id and replacing.withdrawn_at is None:
            # A change starts from the vow as it stands; only the decision is new.
            form = _vow_form(text=replacing.text, kind=replacing.kind, hours=replacing.hours,
                             crisis_only=replacing.crisis_only, area=replacing.area.name if replacing.area else None,
                             replaces=str(replacing.id))
        else:
            replacing, form = None, _vow_form()
        return render_template("allies/vow.html", ally=ally, form=form, replacing=replacing)
    form = _vow_form(formdata=request.form)
    replaces_id = int(form.replaces.data) if (form.replaces.data or "").isdigit() else None
    replacing = db.session.get(allies.AllyVow, replaces_id) if replaces_id else None
    valid = form.validate()
    decision = {}

    def read_decision() -> None:
        decision["it"] = people.parse_decision(now(), form.decided_on.data, form.decision_place.data,
                                               form.decision.data)

    checks = {"decided_on": read_decision, "hours": lambda: allies.parse_hours(form.hours.data)}
    if check_each(form, checks, VOW_FIELDS) and valid:
        try:
            vow = save(lambda session: allies.record_vow(
                session, now(), session.get(allies.Ally, ally.id), text=form.text.data, kind=form.kind.data,
                hours=form.hours.data, crisis_only=form.crisis_only.data, area=form.area.data,
                decision=decision["it"], by=session.get(Member, current_user.id),
                replaces=session.get(allies.AllyVow, replaces_id) if replaces_id else None))
        except DomainError as error:
            attach_error(form, error, VOW_FIELDS)
        else:
            flash(_("The vow is recorded. It is listed, printed and offered over the radio once a second host "
                    "countersigns it.") if vow.replaces_id is None else
                  _("The changed vow is recorded. It replaces the old one once a second host countersigns it; "
                    "until then the old one stands."))
            return redirect(url_for("allies.host_page") + f"#ally-{ally.id}")
    return render_template("allies/vow.html", ally=ally, form=form, replacing=replacing), status_for(form)


@bp.post("/host/allies/vows/<int:vow_id>/countersign")
@requires(people.HOST)
def countersign(vow_id: int) -> ResponseReturnValue:
    _vow_or_404(vow_id)
    try:
        vow = save(lambda session: allies.countersign_vow(session, now(), session.get(allies.AllyVow, vow_id),
                                                          by=session.get(Member, current_user.id)))
    except DomainError as error:
        flash(error.message, "error")
    else:
        forget_public_pages()  # listed from this minute, not CACHE_DEFAULT_TIMEOUT later
        flash(_("The vow of %(name)s is in force: listed, printed and offered over the radio.", name=vow.ally.name))
    return redirect(url_for("allies.host_page"))


def _vow_form_posted(form: FlaskForm, step: str, vow_id: int, work: Callable[..., Any], done: str,
                     fields: dict[str, str] | None = None) -> ResponseReturnValue:
    """A vow's withdraw or kept form (one per vow on the hosts' page): a refusal shows that page again with it."""
    if form.validate():
        try:
            save(work)
        except DomainError as error:
            attach_error(form, error, fields)
        else:
            forget_public_pages()  # a withdrawn vow must not be offered a minute longer, a kept one shows now
            flash(done)
            return redirect(url_for("allies.host_page"))
    return _page(failed=(step, vow_id, form), status=status_for(form))


@bp.post("/host/allies/vows/<int:vow_id>/withdraw")
@requires(people.HOST)
def withdraw_vow(vow_id: int) -> ResponseReturnValue:
    vow = _vow_or_404(vow_id)
    form = WithdrawForm(formdata=request.form, prefix=f"withdraw-{vow_id}")
    return _vow_form_posted(
        form, "withdraw", vow_id,
        lambda session: allies.withdraw_vow(session, now(), session.get(allies.AllyVow, vow_id),
                                            reason=form.reason.data, by=session.get(Member, current_user.id)),
        _("The vow of %(name)s is withdrawn from every list.", name=vow.ally.name))


@bp.post("/host/allies/<int:ally_id>/withdraw")
@requires(people.HOST)
def withdraw_ally(ally_id: int) -> ResponseReturnValue:
    _ally_or_404(ally_id)
    reason = request.form.get("reason", "")
    try:
        ally = save(lambda session: allies.withdraw_ally(session, now(), session.get(allies.Ally, ally_id),
                                                         reason=reason, by=session.get(Member, current_user.id)))
    except DomainError as error:
        flash(error.message, "error")
    else:
        forget_public_pages()
        flash(_("%(name)s is no longer listed as an ally.", name=ally.name))
    return redirect(url_for("allies.host_page"))


@bp.post("/host/allies/vows/<int:vow_id>/kept")
@requires(people.HOST)
def kept(vow_id: int) -> ResponseReturnValue:
    _vow_or_404(vow_id)
    form = FulfilmentForm(formdata=request.form, prefix=f"kept-{vow_id}")
    return _vow_form_posted(
        form, "kept", vow_id,
        lambda session: allies.record_fulfilment(session, now(), session.get(allies.AllyVow, vow_id),
                                                 on=form.on.data, line=form.line.data,
                                                 by=session.get(Member, current_user.id)),
        _("Thank you noted: the bench page celebrates it."), FULFILMENT_FIELDS)

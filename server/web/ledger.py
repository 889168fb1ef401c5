"""The mutual-credit ledger on the web: a member's page, a crew's page, the fund's, the hosts', and the public one.

The domain (server/domain/ledger.py) decides everything; these views parse
forms, run the work in a transaction that takes the write lock first
(``access.save``), and show refusals beside the field they are about.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from server.domain import ledger, people, sealing
from server.domain.errors import DomainError
from server.domain.ledger import LedgerAccount
from server.domain.people import CARE, HOST
from server.extensions import db
from server.web.access import ANY_ROLE, now, public, requires, save
from server.web.forms import attach_error, status_for

bp = Blueprint("ledger", __name__)

AMOUNT_MESSAGE = lazy_gettext("Give the amount as a whole number of credits, from 1 to %(most)s.",
                              most=ledger.MAX_AMOUNT)
LIMIT_MESSAGE = lazy_gettext("Give each limit as a whole number of credits below zero, like 20.")


class TransferForm(FlaskForm):
    giver = SelectField(lazy_gettext("From"), coerce=int,
                        invalid_choice_message=lazy_gettext("Please choose an account you give from."))
    to = StringField(lazy_gettext("To (a crew's name, a member's handle, or \"fund\")"),
                     validators=[DataRequired(lazy_gettext("Say whom the credits go to.")),
                                 Length(max=ledger.MAX_NAME)])
    amount = IntegerField(lazy_gettext("Credits"), validators=[
        InputRequired(AMOUNT_MESSAGE), NumberRange(min=1, max=ledger.MAX_AMOUNT, message=AMOUNT_MESSAGE)])
    memo = StringField(lazy_gettext("Memo (what it was for)"), validators=[Optional(), Length(max=ledger.MAX_MEMO)])
    anonymous = BooleanField(lazy_gettext("Give to the bail and legal fund without my name"))


class ChoicesForm(FlaskForm):
    earns_patrol_credit = BooleanField(lazy_gettext("My patrol shifts earn credits (whole hours, dated to the week)"))
    balance_public = BooleanField(lazy_gettext("Show my balance on the public ledger page"))


class ReverseForm(FlaskForm):
    why = StringField(lazy_gettext("Why (optional)"), validators=[Optional(), Length(max=60)])


class DecisionFields(FlaskForm):
    soft_limit = IntegerField(lazy_gettext("Soft limit: warn below zero by"), validators=[
        InputRequired(LIMIT_MESSAGE), NumberRange(min=0, max=ledger.MAX_LIMIT, message=LIMIT_MESSAGE)])
    hard_limit = IntegerField(lazy_gettext("Hard limit: stop below zero at"), validators=[
        InputRequired(LIMIT_MESSAGE), NumberRange(min=0, max=ledger.MAX_LIMIT, message=LIMIT_MESSAGE)])
    keepers = StringField(lazy_gettext("Keepers (handles, comma-separated)"), validators=[Optional(), Length(max=300)])
    decided_on = DateField(lazy_gettext("Day of the assembly decision"), validators=[
        InputRequired(lazy_gettext("Please give the day the assembly decided it."))])
    decision_place = StringField(lazy_gettext("Meeting or place"), validators=[
        DataRequired(lazy_gettext("Please say where the assembly met.")), Length(max=people.MAX_PLACE)])
    decision = TextAreaField(lazy_gettext("The assembly's decision"), validators=[
        DataRequired(lazy_gettext("Please write the decision's words.")), Length(max=people.MAX_DECISION_WORDS)])


class OpenForm(DecisionFields):
    kind = SelectField(lazy_gettext("Account for"), choices=[
        SelectChoice(ledger.CREW, lazy_gettext("a crew")),
        SelectChoice(ledger.FUND, lazy_gettext("the bail and legal fund"))],
        invalid_choice_message=lazy_gettext("Please choose a crew or the fund."))
    name = StringField(lazy_gettext("Crew's name"), validators=[Optional(), Length(max=ledger.MAX_NAME)])
    pays_patrol_hours = BooleanField(lazy_gettext("This crew pays stewards' patrol hours (those who opt in)"))


class LimitsForm(DecisionFields):
    # One form with the account to choose (not one form per crew: their fields would share ids).
    account = SelectField(lazy_gettext("Account"), coerce=int, choices=[],
                          invalid_choice_message=lazy_gettext("Please choose a crew whose decision is not waiting."))


class PayoutForm(FlaskForm):
    amount = IntegerField(lazy_gettext("Credits"), validators=[
        InputRequired(AMOUNT_MESSAGE), NumberRange(min=1, max=ledger.MAX_AMOUNT, message=AMOUNT_MESSAGE)])
    memo = StringField(lazy_gettext("What for, with the case code (like \"bail C11\"); never a name"),
                       validators=[DataRequired(lazy_gettext("Say what the payout was for, with the case code.")),
                                   Length(max=ledger.MAX_MEMO)])


class CashForm(FlaskForm):
    amount = IntegerField(lazy_gettext("Credits counted in the tin"), validators=[
        InputRequired(AMOUNT_MESSAGE), NumberRange(min=1, max=ledger.MAX_AMOUNT, message=AMOUNT_MESSAGE)])


class ButtonForm(FlaskForm):
    """Only the CSRF token."""


# Where a refusal of the assembly's decision lands on the hosts' forms.
DECISION_FIELDS = {"decision date": "decided_on", "decision place": "decision_place", "assembly decision": "decision"}


def _me() -> people.Member:
    return current_user.member


def _shown(me: people.Member) -> dict:
    """The naming rules for one viewer, bound once per page (each row asked current_user twice)."""
    unlocked = current_user.unlocked
    private = unlocked.member_private if unlocked is not None else None
    return {"shown_giver": lambda e: ledger.shown_giver(e, me),
            "shown_receiver": lambda e: ledger.shown_receiver(e, me),
            "shown_memo": lambda e: _memo(e, private)}


def _memo(entry: ledger.LedgerEntry | ledger.LedgerTransfer, private) -> str:  # noqa: ANN001
    """The memo as this viewer reads it: a memo between two members opens only with one side's own key."""
    if entry.sealed_memo is None:
        return entry.memo
    words = sealing.open_own(entry.sealed_memo, private)
    if words is None:
        words = _("(a memo only the two sides read: sealed to a key you did not have then)")
    return f"{entry.memo}: {words}" if entry.memo else words


# -- a member's own page -------------------------------------------------------------------------------------


@bp.route("/ledger/mine", methods=["GET", "POST"])
@requires()
def mine() -> ResponseReturnValue:
    form = TransferForm(prefix="pay")
    choices = ChoicesForm(prefix="choices")
    # Read once for the form, the offers and the kept list (each used to read them again).
    acting = ledger.acting_accounts(db.session, now(), _me())
    account = next((a for a in acting if a.kind == ledger.MEMBER), None)
    givers = [a for a in acting if a.kind in (ledger.MEMBER, ledger.CREW)]
    form.giver.choices = [SelectChoice(a.id, a.title) for a in givers] or [SelectChoice(0, _me().handle)]
    if form.validate_on_submit():
        try:
            outcome = save(lambda s: _propose(s, form))
        except DomainError as error:
            attach_error(form, error, fields={"from": "giver"})
        else:
            flash(_("Offered: %(amount)d credits to %(to)s (%(code)s). They confirm it to move the credits.",
                    amount=form.amount.data, to=outcome[1], code=outcome[0]))
            if outcome[2]:
                flash(outcome[2])
            if outcome[3]:
                flash(_("The memo was not kept: it would be sealed to the two sides' own keys, and neither of you "
                        "has logged in to the hub with a password yet."))
            return redirect(url_for(".mine"))
    if not choices.is_submitted() and account is not None:
        choices.earns_patrol_credit.data = account.earns_patrol_credit
        choices.balance_public.data = account.balance_public
    return _mine_page(form, choices, account, acting)


def _mine_page(form: TransferForm, choices: ChoicesForm, account: LedgerAccount | None,
               acting: list[LedgerAccount]) -> ResponseReturnValue:
    page = render_template(
        "ledger/mine.html", form=form, choices=choices, account=account,
        entries=ledger.entries_of(db.session, account, limit=50) if account else [],
        waiting=ledger.waiting_for(db.session, now(), _me(), acting),
        offered=ledger.offered_by(db.session, now(), _me(), acting),
        kept=[a for a in acting if a.kind != ledger.MEMBER], button=ButtonForm(), reverse_form=ReverseForm(),
        **_shown(_me()), unit_hint=_unit_hint())
    return page, status_for(form)


def _unit_hint() -> str:
    return _("A credit is an hour of someone's time, or what the crews agree is worth the same.")


def _propose(session, form: TransferForm) -> tuple[str, str, str, bool]:
    me = session.merge(_me())
    if form.giver.data == 0:
        giver = ledger.account_for_member(session, now(), me)
    else:
        giver = ledger.find_account(session, form.giver.data)
    receiver = ledger.resolve_receiver(session, now(), form.to.data)
    outcome = ledger.propose(session, now(), giver=giver, receiver=receiver, amount=form.amount.data,
                             memo=form.memo.data, by=me, anonymous=form.anonymous.data)
    return outcome.transfer.code, receiver.title, outcome.warning, outcome.memo_dropped


@bp.post("/ledger/mine/choices")
@requires()
def choices() -> ResponseReturnValue:
    form = ChoicesForm(prefix="choices")
    if form.validate_on_submit():
        save(lambda s: ledger.set_member_choices(s, now(), s.merge(_me()),
                                                 earns_patrol_credit=form.earns_patrol_credit.data,
                                                 balance_public=form.balance_public.data))
        flash(_("Your choices are saved."))
    return redirect(url_for(".mine"))


@bp.post("/ledger/transfers/<int:transfer_id>/confirm")
@requires()
def confirm(transfer_id: int) -> ResponseReturnValue:
    return _decide(transfer_id, "confirm")


@bp.post("/ledger/transfers/<int:transfer_id>/refuse")
@requires()
def refuse(transfer_id: int) -> ResponseReturnValue:
    """The receiver turns an offer down, or its giver withdraws it."""
    return _decide(transfer_id, "refuse")


def _decide(transfer_id: int, act: str) -> ResponseReturnValue:
    form = ButtonForm()
    if not form.validate_on_submit():
        abort(400)

    def work(session):
        transfer = ledger.find_transfer(session, transfer_id)
        me = session.merge(_me())
        if act == "confirm":
            outcome = ledger.confirm(session, now(), transfer, by=me)
            return outcome.transfer.refusal if outcome.transfer.state == ledger.REFUSED else None, outcome.warning
        ledger.refuse(session, now(), transfer, by=me)
        return None, ""

    try:
        refused, warning = save(work)
    except DomainError as error:
        flash(error.message, "error")
    else:
        if refused:
            flash(refused, "error")
        else:
            flash(_("Confirmed: the credits moved.") if act == "confirm" else _("Done: nothing moved."))
        if warning:
            flash(warning)
    return redirect(url_for(".mine"))


@bp.post("/ledger/entries/<int:entry_id>/reverse")
@requires()
def reverse(entry_id: int) -> ResponseReturnValue:
    form = ReverseForm()
    if form.validate_on_submit():
        def work(session):
            entry = session.get(ledger.LedgerEntry, entry_id)
            if entry is None:
                abort(404)
            return ledger.reverse(session, now(), entry, by=session.merge(_me()), why=form.why.data)

        try:
            correction = save(work)
        except DomainError as error:
            flash(error.message, "error")
        else:
            flash(_("Entry %(n)d is reversed by entry %(m)d.", n=entry_id, m=correction.id))
    return redirect(url_for(".mine"))


# -- a crew's page, for its keepers; the fund's, for the care ring -------------------------------------------


@bp.get("/ledger/accounts/<int:account_id>")
@requires()
def account(account_id: int) -> ResponseReturnValue:
    acct = ledger.find_account(db.session, account_id)
    is_host = people.has_role(db.session, _me(), HOST, now())
    if not (ledger.may_act_for(db.session, now(), acct, _me()) or is_host) or acct.kind == ledger.MEMBER:
        abort(404)
    return render_template("ledger/account.html", account=acct,
                           entries=ledger.entries_of(db.session, acct, limit=100),
                           decisions=ledger.decisions_of(db.session, acct), button=ButtonForm(),
                           reverse_form=ReverseForm(), keeper=ledger.may_act_for(db.session, now(), acct, _me()),
                           **_shown(_me()))


@bp.route("/ledger/fund", methods=["GET", "POST"])
@requires(CARE)
def fund() -> ResponseReturnValue:
    payout, cash = PayoutForm(prefix="payout"), CashForm(prefix="cash")
    acct = ledger.fund_account(db.session)
    if "payout-amount" in request.form and payout.validate_on_submit():
        try:
            save(lambda s: ledger.pay_out(s, now(), amount=payout.amount.data, memo=payout.memo.data,
                                          by=s.merge(_me())))
        except DomainError as error:
            attach_error(payout, error)
        else:
            flash(_("Paid out: %(amount)d credits.", amount=payout.amount.data))
            return redirect(url_for(".fund"))
    elif "cash-amount" in request.form and cash.validate_on_submit():
        try:
            save(lambda s: ledger.record_cash(s, now(), amount=cash.amount.data, by=s.merge(_me())))
        except DomainError as error:
            attach_error(cash, error)
        else:
            flash(_("Counted: %(amount)d credits into the fund.", amount=cash.amount.data))
            return redirect(url_for(".fund"))
    page = render_template("ledger/fund.html", account=acct, payout=payout, cash=cash,
                           entries=ledger.entries_of(db.session, acct, limit=100) if acct else [],
                           months=ledger.fund_months(db.session), button=ButtonForm(), reverse_form=ReverseForm(),
                           waiting=[t for t in ledger.waiting_for(db.session, now(), _me())
                                    if acct is not None and t.receiver_id == acct.id],
                           **_shown(_me()))
    return page, max(status_for(payout), status_for(cash))


# -- the hosts' page: open accounts, set limits, countersign -------------------------------------------------


def _decision(form: DecisionFields) -> people.Decision:
    return people.parse_decision(now(), form.decided_on.data, form.decision_place.data, form.decision.data)


@bp.route("/host/ledger", methods=["GET", "POST"])
@requires(HOST)
def host_page() -> ResponseReturnValue:
    form = OpenForm(prefix="open")
    if form.validate_on_submit():
        try:
            save(lambda s: ledger.open_account(
                s, now(), form.name.data or "", kind=form.kind.data, soft_limit=form.soft_limit.data,
                hard_limit=form.hard_limit.data, keepers=form.keepers.data, decision=_decision(form),
                by=s.merge(_me()), pays_patrol_hours=form.pays_patrol_hours.data))
        except DomainError as error:
            attach_error(form, error, fields=DECISION_FIELDS)
        else:
            flash(_("Recorded. The account opens when a second host countersigns."))
            return redirect(url_for(".host_page"))
    return _host_page(form, LimitsForm(prefix="limits", formdata=None))


def _host_page(form: OpenForm, limits: LimitsForm) -> ResponseReturnValue:
    accounts = ledger.crew_accounts(db.session)
    fund_acct = ledger.fund_account(db.session)
    if fund_acct is not None:
        accounts.append(fund_acct)
    page = render_template("ledger/host.html", form=form, limits=_limits_choices(limits), accounts=accounts,
                           pending=ledger.pending_decisions(db.session), button=ButtonForm(), me=_me())
    return page, max(status_for(form), status_for(limits))


def _limits_choices(limits: LimitsForm) -> LimitsForm:
    """Crews in force whose last decision is not still waiting for its countersign (one at a time)."""
    waiting = {d.account_id for d in ledger.pending_decisions(db.session)}
    limits.account.choices = [SelectChoice(a.id, a.title) for a in ledger.crew_accounts(db.session)
                              if a.in_force and a.id not in waiting]
    return limits


@bp.post("/host/ledger/limits")
@requires(HOST)
def set_limits() -> ResponseReturnValue:
    limits = _limits_choices(LimitsForm(prefix="limits"))
    if limits.validate_on_submit():
        try:
            save(lambda s: ledger.set_limits(
                s, now(), ledger.find_account(s, limits.account.data), soft_limit=limits.soft_limit.data,
                hard_limit=limits.hard_limit.data, keepers=limits.keepers.data or None, decision=_decision(limits),
                by=s.merge(_me())))
        except DomainError as error:
            attach_error(limits, error, fields=DECISION_FIELDS)
        else:
            flash(_("Recorded. The new limits hold when a second host countersigns."))
            return redirect(url_for(".host_page"))
    return _host_page(OpenForm(prefix="open", formdata=None), limits)


@bp.post("/host/ledger/decisions/<int:decision_id>/countersign")
@requires(HOST)
def countersign(decision_id: int) -> ResponseReturnValue:
    if not ButtonForm().validate_on_submit():
        abort(400)

    def work(session):
        ask = session.get(ledger.LedgerDecision, decision_id)
        if ask is None:
            abort(404)
        return ledger.countersign(session, now(), ask, by=session.merge(_me()))

    try:
        save(work)
    except DomainError as error:
        flash(error.message, "error")
    else:
        flash(_("Countersigned: the decision is in force."))
    return redirect(url_for(".host_page"))


# -- the public page -----------------------------------------------------------------------------------------


@bp.get("/ledger")
@public
def public_page() -> ResponseReturnValue:
    return render_template("ledger/public.html", view=ledger.public_view(db.session))


__all__ = ["bp", "ANY_ROLE"]

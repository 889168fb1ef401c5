"""The open task map on the web: the public board, and the pages where role-holders create, take and close tasks.

The rules are server/domain/tasks.py's. The public board lists open public
tasks by area, never who took one and never a result or an account; a
neighbour volunteers through the aid board's brokered contact (the task's
ask on the aid board, web/aid.py), so no second way to reach anyone exists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import BooleanField, DateTimeLocalField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from server.domain import patrol, sealing, tasks, waiting
from server.domain.errors import DomainError
from server.domain.people import Member
from server.extensions import db
from server.web.access import holds, now, public, requires, save
from server.web.caching import forget_public_pages, public_page
from server.web.filters import from_local
from server.web.forms import attach_error, status_for, validate_all

bp = Blueprint("tasks", __name__)

NOT_SAID = ""
_TOO_LONG = lazy_gettext("This is too long: %(length)d characters, at most %(max)d.")
_WHEN = lazy_gettext("Please give a date and time, like 2026-11-21 18:00.")
# The domain names fields as a person reads them; these are the forms' names.
TASK_FIELDS = {"task": "title", "what done means": "done_means", "area": "area", "due_at": "due_at"}


class TaskForm(FlaskForm):
    title = StringField(lazy_gettext("What needs doing"), validators=[
        DataRequired(lazy_gettext("Please say what needs doing.")), Length(max=tasks.MAX_TITLE, message=_TOO_LONG)])
    done_means = TextAreaField(lazy_gettext("What \u201cdone\u201d means"), validators=[
        DataRequired(lazy_gettext("Please say what \u201cdone\u201d means, so whoever takes it knows when to stop.")),
        Length(max=tasks.MAX_DONE_MEANS, message=_TOO_LONG)])
    area = SelectField(lazy_gettext("Where (a published area)"),
                       invalid_choice_message=lazy_gettext("Please choose the published area where the task is."))
    starts_at = DateTimeLocalField(lazy_gettext("From"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
                                   validators=[DataRequired(_WHEN)])
    due_at = DateTimeLocalField(lazy_gettext("Until"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
                                validators=[DataRequired(_WHEN)])
    public = BooleanField(lazy_gettext("List it on the public task map, so neighbours can offer a hand"))


class ResultForm(FlaskForm):
    result = StringField(lazy_gettext("What was done, in a line"), validators=[
        DataRequired(lazy_gettext("Please say in a line what was done.")),
        Length(max=tasks.MAX_RESULT, message=_TOO_LONG)])


class ReleaseForm(FlaskForm):
    reason = StringField(lazy_gettext("Why you release it (for the record of power used)"),
                         validators=[Length(max=tasks.MAX_REASON, message=_TOO_LONG)])


class AccountForm(FlaskForm):
    text = TextAreaField(lazy_gettext("After-action account"), validators=[
        DataRequired(lazy_gettext("Please write the account: what happened, and what to do next time.")),
        Length(max=tasks.MAX_ACCOUNT, message=_TOO_LONG)])


def _me(s: Session) -> Member:
    return s.get(Member, current_user.id)


def _area_choices() -> list[SelectChoice]:
    return [SelectChoice(NOT_SAID, lazy_gettext("Choose one")),
            *(SelectChoice(str(area.id), area.name) for area in patrol.list_areas(db.session))]


def _utc(value: datetime | None) -> datetime | None:
    return from_local(value) if value is not None else None


# -- the public board -----------------------------------------------------------------


@bp.get("/tasks")
@public
@public_page
def public_board() -> str:
    # Open public tasks by area: what, where, when, whether help is needed. Never who took one.
    return render_template("tasks/public.html", groups=tasks.public_board(db.session, now()))


# -- role-holders ---------------------------------------------------------------------------


@bp.get("/host/tasks")
@requires()
def index() -> ResponseReturnValue:
    moment = now()
    return render_template("tasks/index.html", open_tasks=tasks.open_tasks(db.session), now=moment,
                           owed=tasks.accounts_waiting(db.session, current_user.member),
                           # The oldest account owed can be written right here; the others from their tasks.
                           account_form=AccountForm(prefix="account"),
                           may_create=holds(*tasks.CREATOR_ROLES), reads_accounts=holds(*tasks.ACCOUNT_READERS))


@bp.route("/host/tasks/new", methods=["GET", "POST"])
@requires(*tasks.CREATOR_ROLES)
def new() -> ResponseReturnValue:
    form = TaskForm()
    form.area.choices = _area_choices()
    if not form.area.choices[1:]:
        flash(_("There is no published area yet: a host publishes areas on the stewards page first."), "warning")

    def area_id() -> int | None:
        return int(form.area.data) if form.area.data and form.area.data.isdigit() else None

    checks = {
        "area": lambda: tasks.check_area(db.session, area_id()),
        "due_at": lambda: tasks.check_time_frame(now(), _utc(form.starts_at.data), _utc(form.due_at.data)),
    }
    if validate_all(form, checks, fields=TASK_FIELDS):
        try:
            created = save(lambda s: tasks.create(
                s, now(), _me(s), title=form.title.data, done_means=form.done_means.data, area_id=area_id(),
                starts_at=_utc(form.starts_at.data), due_at=_utc(form.due_at.data), public=form.public.data))
        except DomainError as error:
            attach_error(form, error, fields=TASK_FIELDS)
        else:
            task = created.task
            if created.receipt_code:
                forget_public_pages()  # on the public map at the next reading, not a cache's lifetime later
                # Shown once, in this answer's message and nowhere else: the hub keeps no copy of the code.
                flash(_("Task %(code)s is on the map, and on the aid board as an ask. Neighbours' messages open with "
                        "the code %(receipt)s on the aid board's “Your post” page: write it down, it is "
                        "shown only now.", code=task.code, receipt=created.receipt_code), "receipt")
            else:
                flash(_("Task %(code)s is on the map.", code=task.code))
            return redirect(url_for("tasks.detail", task_id=task.id))
    return render_template("tasks/new.html", form=form), status_for(form)


def _detail(task: tasks.Task, **forms: FlaskForm) -> ResponseReturnValue:
    me = current_user.member
    oversees = holds("host") or (task.created_by_id == me.id and holds(*tasks.CREATOR_ROLES))
    page = render_template(
        "tasks/detail.html", task=task, now=now(), oversees=oversees, mine=task.taken_by_id == me.id,
        closed_by_me=task.closed_by_id == me.id, reads_accounts=holds(*tasks.ACCOUNT_READERS),
        # Truthful: a volunteer's message kept from the creator reaches them only while a host reads the aid vault.
        host_reads_aid=waiting.anyone_reads(db.session, now(), sealing.AID),
        result_form=forms.get("result_form") or ResultForm(prefix="done"),
        release_form=forms.get("release_form") or ReleaseForm(prefix="release"),
        account_form=forms.get("account_form") or AccountForm(prefix="account"))
    return page, 400 if any(f.errors or f.form_errors for f in forms.values()) else 200


@bp.get("/host/tasks/<int:task_id>")
@requires()
def detail(task_id: int) -> ResponseReturnValue:
    return _detail(tasks.get(db.session, task_id))


def _act(task_id: int, work: Callable[[Session, tasks.Task], object], done: str, form: FlaskForm | None = None,
         form_name: str = "", fields: dict[str, str] | None = None, public_change: bool = False,
         then: str | None = None) -> ResponseReturnValue:
    """One step on a task: the form checked, the domain asked, then back to the task saying what happened."""
    task = tasks.get(db.session, task_id)
    if form is not None and not form.validate_on_submit():
        return _detail(task, **{form_name: form})
    try:
        save(lambda s: work(s, tasks.get(s, task_id)))
    except DomainError as error:
        if form is None:
            flash(error.message, "error")
            return redirect(url_for("tasks.detail", task_id=task_id))
        attach_error(form, error, fields=fields)
        db.session.expire_all()
        return _detail(tasks.get(db.session, task_id), **{form_name: form})
    if public_change and task.public:
        forget_public_pages()
    flash(done)
    return redirect(then or url_for("tasks.detail", task_id=task_id))


@bp.post("/host/tasks/<int:task_id>/take")
@requires()
def take(task_id: int) -> ResponseReturnValue:
    return _act(task_id, lambda s, task: tasks.take(s, now(), task, _me(s), patrol.SOURCE_WEB),
                _("The task is yours. When it is done, close it here or send DONE with its code by radio."))


@bp.post("/host/tasks/<int:task_id>/release")
@requires()
def release(task_id: int) -> ResponseReturnValue:
    form = ReleaseForm(prefix="release")
    return _act(task_id, lambda s, task: tasks.release(s, now(), task, _me(s), form.reason.data),
                _("The task is back on the map for anyone to take."), form, "release_form")


@bp.post("/host/tasks/<int:task_id>/done")
@requires()
def done(task_id: int) -> ResponseReturnValue:
    form = ResultForm(prefix="done")
    # Straight on to the after-action account: closing a task is when it is asked for.
    return _act(task_id, lambda s, task: tasks.finish(s, now(), task, _me(s), form.result.data, patrol.SOURCE_WEB),
                _("The task is done. Thank you. Please write its after-action account now, while it is fresh."),
                form, "result_form", fields={"result": "result"}, public_change=True,
                then=url_for("tasks.detail", task_id=task_id, _anchor="account"))


@bp.post("/host/tasks/<int:task_id>/cancel")
@requires()
def cancel(task_id: int) -> ResponseReturnValue:
    return _act(task_id, lambda s, task: tasks.cancel(s, now(), task, _me(s)), _("The task is cancelled."),
                public_change=True)


@bp.post("/host/tasks/<int:task_id>/account")
@requires()
def account(task_id: int) -> ResponseReturnValue:
    form = AccountForm(prefix="account")
    return _act(task_id, lambda s, task: tasks.write_account(s, now(), task, _me(s), form.text.data),
                _("The after-action account is kept for the assembly. Thank you."), form, "account_form",
                fields={"after-action account": "text"})


@bp.get("/host/tasks/accounts")
@requires(*tasks.ACCOUNT_READERS)
def accounts() -> ResponseReturnValue:
    """Closed tasks with their results and after-action accounts, for hosts and the assembly: never public."""
    return render_template("tasks/accounts.html", closed=tasks.closed_tasks(db.session))


@bp.app_template_global("task_accounts_owed")
def task_accounts_owed() -> int:
    """How many after-action accounts the logged-in member still owes (the hub pages' reminder)."""
    if not current_user.is_authenticated or getattr(current_user, "duress", False):
        return 0
    return len(tasks.accounts_waiting(db.session, current_user.member))

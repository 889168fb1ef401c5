"""The aid board: offers and asks, messages through the hub, and moderation.

Neighbours have no accounts: a post is answered through the hub, and its
author comes back with the receipt code they were given. How a neighbour
can be reached never appears on a public page; only the host sees it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import (
    Form,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError
from wtforms.widgets import TextInput

from server.domain import aid, patrol, sealing, waiting
from server.domain.codes import normalize_receipt_code
from server.domain.errors import DomainError, NotFound
from server.domain.people import HOST
from server.extensions import db, limiter
from server.web.access import now, public, requires, save
from server.web.forms import (
    attach_error,
    public_form_limit,
    receipt_lookup_limit,
    status_for,
)
from server.web.receipts import forget_code
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("aid", __name__)

# The receipt code waits in the session between the post and the receipt
# page, so reloading the receipt shows the code again instead of posting twice.
RECEIPT_KEY = "aid_receipt"
SENT_KEY = "aid_message_sent_for"
SENT_CHOICE_KEY = "aid_message_contact_choice"
RECEIPT_CONTACT_KEY = "aid_receipt_left_contact"  # whether the poster left a way to reach them (not the contact)

NOT_SAID = ""
KIND_CHOICES = [SelectChoice(aid.OFFER, lazy_gettext("I can offer help")), SelectChoice(aid.ASK, lazy_gettext("I am asking for help"))]
# Lazy: built once at import, read out in each visitor's language.
CATEGORY_CHOICES = [SelectChoice(category, lazy_gettext(aid.CATEGORY_LABELS.untranslated(category)))
                    for category in aid.CATEGORIES]
# A receipt code is 11 characters; people add spaces, so allow some slack.
MAX_TYPED_CODE = 40
# The domain names fields as a neighbour would; these are the form's names.
POST_FIELDS = {"description": "text", "way to reach you": "contact"}
MESSAGE_FIELDS = {"message": "text", "contact choice": "contact_choice"}
# Keeping it comes first: showing how to reach you is the choice that takes a say-so.
CONTACT_CHOICE_LABELS = [
    SelectChoice(aid.KEPT, lazy_gettext("No, I keep it to myself: my message says where to find me (say, the bench on "
                                        "Saturday mornings), or I come by")),
    SelectChoice(aid.SHOWN, lazy_gettext("Yes, they may see it: I write my number, email or handle in the message")),
]

# Lazy: defined once, read out in each visitor's language.
_TOO_LONG = lazy_gettext("This is too long: %(length)d characters, at most %(max)d.")
_CHOOSE_CATEGORY = lazy_gettext("Please choose a kind of help from the list.")


class PostForm(FlaskForm):
    """A neighbour's offer or ask, as they put it on the board."""

    kind = RadioField(
        lazy_gettext("Do you offer help, or ask for it?"),
        choices=KIND_CHOICES,
        invalid_choice_message=lazy_gettext("Please say whether you offer or ask for help."),
    )
    category = SelectField(
        lazy_gettext("What kind of help"),
        choices=[SelectChoice(NOT_SAID, lazy_gettext("Choose one")), *CATEGORY_CHOICES],
        invalid_choice_message=_CHOOSE_CATEGORY,
        validators=[DataRequired(_CHOOSE_CATEGORY)],
    )
    text = TextAreaField(
        lazy_gettext("In a few words"),
        validators=[DataRequired(lazy_gettext("Please fill in the description.")), Length(max=aid.MAX_TEXT, message=_TOO_LONG)],
    )
    # Choices are the host's published areas, filled in per request.
    area = SelectField(lazy_gettext("Roughly where"), invalid_choice_message=lazy_gettext("Please choose an area from the list."))
    days = IntegerField(
        lazy_gettext("How many days should it stay up?"),
        invalid_value_message=lazy_gettext("Please give the number of days as a whole number, like 7."),
        # A number input would silently drop "abc" in the browser; a text input shows it back.
        widget=TextInput(),
        render_kw={"inputmode": "numeric"},
    )
    contact = StringField(
        lazy_gettext("A private way to reach you (optional)"), validators=[Length(max=aid.MAX_CONTACT, message=_TOO_LONG)]
    )

    def validate_days(self, field: IntegerField) -> None:
        most = current_app.config["AID_MAX_DAYS"]
        # ``None`` means it was not a number, and the field already says so.
        if field.data is not None and not 1 <= field.data <= most:
            raise ValidationError(_("A post can stay up from 1 to %(most)s days.", most=most))


class MessageForm(FlaskForm):
    """An answer to a post, for the host and the poster only, and what the poster may see of how to reach you."""

    # No choice is made for the helper: the form asks until they choose.
    contact_choice = RadioField(
        lazy_gettext("May the person who posted this see how to reach you?"),
        choices=CONTACT_CHOICE_LABELS,
        invalid_choice_message=lazy_gettext("Please choose whether the person who posted may see how to reach you."),
    )
    text = TextAreaField(
        lazy_gettext("Your message"),
        validators=[DataRequired(lazy_gettext("Please write a message.")), Length(max=aid.MAX_MESSAGE, message=_TOO_LONG)],
    )


class ReceiptForm(FlaskForm):
    """The receipt code, typed in or carried by a button, and what to do with the post."""

    code = StringField(
        lazy_gettext("Your receipt code"),
        validators=[
            DataRequired(lazy_gettext("Please type the receipt code you were given.")),
            Length(max=MAX_TYPED_CODE, message=lazy_gettext("That is too long for a receipt code.")),
        ],
    )
    # Empty to look at the post; "taken" or "withdrawn" to close it.
    action = HiddenField()


class BoardFilter(Form):
    """Filters from the query string; a value that is not on the list means no filter."""

    kind = SelectField(
        lazy_gettext("Show"),
        choices=[
            SelectChoice(NOT_SAID, lazy_gettext("Offers and asks")),
            SelectChoice(aid.OFFER, lazy_gettext("Offers")),
            SelectChoice(aid.ASK, lazy_gettext("Asks")),
        ],
    )
    category = SelectField(lazy_gettext("Kind of help"), choices=[SelectChoice(NOT_SAID, lazy_gettext("Any kind of help")), *CATEGORY_CHOICES])


def _area_choices() -> list[SelectChoice]:
    areas = patrol.list_areas(db.session)
    return [SelectChoice(NOT_SAID, lazy_gettext("Not said")), *(SelectChoice(str(area.id), area.name) for area in areas)]


def _area_id(value: str) -> int | None:
    """The chosen area's id; the value has already been checked against the choices."""
    return int(value) if value != NOT_SAID else None


# -- the public board -----------------------------------------------------------


@bp.get("/aid")
@public
def board() -> ResponseReturnValue:
    filters = BoardFilter(request.args)
    kind = filters.kind.data if filters.kind.data in aid.KINDS else NOT_SAID
    category = filters.category.data if filters.category.data in aid.CATEGORIES else NOT_SAID
    # Show the filter actually applied, not a value that was ignored.
    filters.kind.data, filters.category.data = kind, category
    posts = [
        post
        for post in aid.open_posts(db.session, now())
        if (not kind or post.kind == kind) and (not category or post.category == category)
    ]
    return render_template("aid/board.html", posts=posts, filters=filters, filtered=bool(kind or category))


@bp.route("/aid/new", methods=["GET", "POST"])
@limiter.limit(public_form_limit, methods=["POST"])
@public
def new() -> ResponseReturnValue:
    cfg = current_app.config
    form = PostForm(days=cfg["AID_DEFAULT_DAYS"])
    form.area.choices = _area_choices()
    if form.validate_on_submit():
        try:
            posted = save(
                lambda s: aid.post_aid(
                    s,
                    now(),
                    kind=form.kind.data,
                    category=form.category.data,
                    text=form.text.data,
                    area_id=_area_id(form.area.data),
                    days=form.days.data,
                    max_days=cfg["AID_MAX_DAYS"],
                    contact=form.contact.data,
                )
            )
        except DomainError as error:
            attach_error(form, error, fields=POST_FIELDS)
        else:
            session[RECEIPT_KEY] = posted.receipt_code
            session[RECEIPT_CONTACT_KEY] = bool(form.contact.data and form.contact.data.strip())
            return redirect(url_for("aid.receipt"))
    return render_template("aid/new.html", form=form, max_days=cfg["AID_MAX_DAYS"]), status_for(form)


@bp.get("/aid/receipt")
@public
def receipt() -> ResponseReturnValue:
    code = session.get(RECEIPT_KEY)
    if not code:
        return redirect(url_for("aid.new"))
    # Truthful: a contact left for the host to pass messages on reaches nobody while nobody holds the role.
    unread_contact = bool(session.get(RECEIPT_CONTACT_KEY)) and not waiting.anyone_reads(db.session, now(), sealing.AID)
    return render_template("aid/receipt.html", code=code, unread_contact=unread_contact)


@bp.post("/aid/receipt/forget")
@public
def forget_receipt() -> ResponseReturnValue:
    """On a borrowed phone, the next person must not find the code."""
    return forget_code(RECEIPT_KEY, RECEIPT_CONTACT_KEY, then="aid.mine")


@bp.route("/aid/<int:post_id>", methods=["GET", "POST"])
@limiter.limit(public_form_limit, methods=["POST"])
@public
def show(post_id: int) -> ResponseReturnValue:
    # A post that is no longer open is a NotFound, answered by the friendly 404 page.
    post = aid.get_open_post(db.session, now(), post_id)
    form = MessageForm()
    if form.validate_on_submit():
        kind, choice = post.kind, form.contact_choice.data
        try:
            save(lambda s: aid.leave_message(s, now(), aid.get_open_post(s, now(), post_id), form.text.data, choice))
        except DomainError as error:
            attach_error(form, error, fields=MESSAGE_FIELDS)
        else:
            session[SENT_KEY] = kind
            session[SENT_CHOICE_KEY] = choice
            return redirect(url_for("aid.sent"))
    return render_template("aid/show.html", post=post, form=form), status_for(form)


@bp.get("/aid/sent")
@public
def sent() -> ResponseReturnValue:
    kind = session.get(SENT_KEY)
    if kind not in aid.KINDS:
        return redirect(url_for("aid.board"))
    shown = session.get(SENT_CHOICE_KEY) == aid.SHOWN
    # Truthful: "the hub host passes it on" only while someone holds the role that reads the aid vault.
    host_reads = waiting.anyone_reads(db.session, now(), sealing.AID)
    return render_template("aid/sent.html", kind=kind, shown=shown, host_reads=host_reads,
                           retention_days=current_app.config["AID_RETENTION_DAYS"])


# -- the poster, with their receipt code ---------------------------------------


@bp.route("/aid/mine", methods=["GET", "POST"])
@limiter.limit(receipt_lookup_limit, methods=["POST"])
@public
def mine() -> ResponseReturnValue:
    form = ReceiptForm()
    if not form.validate_on_submit():
        return render_template("aid/mine.html", form=form, post=None), status_for(form)
    code = normalize_receipt_code(form.code.data)
    if not code:
        form.code.errors.append(_("That does not look like a receipt code. Aid codes look like H-7K2M-9QXR."))
        return render_template("aid/mine.html", form=form, post=None), 400
    try:
        # The code is checked on every request: a button carries it, but anyone can forge a button.
        mine = aid.post_for_receipt(db.session, code)
    except NotFound as error:
        attach_error(form, error, fields={"receipt code": "code"})
        return render_template("aid/mine.html", form=form, post=None), 404
    post, done = mine.post, None
    if form.action.data:
        try:
            save(lambda s: aid.close_by_poster(s, now(), aid.get_post(s, post.id), form.action.data))
        except DomainError as error:
            attach_error(form, error)
        else:
            done = _closing_note(post.status)
    page = render_template("aid/mine.html", form=form, post=post, messages=mine.messages, code=code, done=done,
                           is_open=post.is_open(now()))
    return page, status_for(form)


def _closing_note(status: str) -> str:
    if status == aid.TAKEN:
        return "Your post is marked as taken up and has left the board. Thank you for using the bench."
    return "Your post is withdrawn and has left the board."


# -- the hub host ---------------------------------------------------------------


@bp.get("/host/aid")
@requires(HOST)
def moderation() -> ResponseReturnValue:
    return render_template("aid/moderation.html", posts=aid.moderation_queue(db.session), now=now())


@bp.post("/host/aid/<int:post_id>/hide")
@requires(HOST)
def hide(post_id: int) -> ResponseReturnValue:
    def work(s: Session) -> None:
        aid.hide(s, now(), aid.get_post(s, post_id))

    return _moderate(work, _("The post is hidden from the board."), anchor=f"post-{post_id}")


@bp.post("/host/aid/<int:post_id>/restore")
@requires(HOST)
def restore(post_id: int) -> ResponseReturnValue:
    return _moderate(
        lambda s: aid.restore(s, now(), aid.get_post(s, post_id)),
        _("The post is restored (back on the board if its days have not run out)."),
        anchor=f"post-{post_id}",
    )


@bp.post("/host/aid/messages/<int:message_id>/passed-on")
@requires(HOST)
def passed_on(message_id: int) -> ResponseReturnValue:
    return _moderate(
        lambda s: aid.mark_passed_on(s, now(), message_id),
        _("The message is marked as passed on."),
        anchor=f"message-{message_id}",
    )


def _moderate(work: Callable[[Session], object], done: str, anchor: str) -> ResponseReturnValue:
    """Run a moderation step and go back to the list, saying what happened."""
    try:
        save(work)
    except DomainError as error:
        flash(error.message, "error")
        anchor = ""
    else:
        flash(done)
    return redirect(url_for("aid.moderation", _anchor=anchor or None))

"""What every form view shares: limits for public forms, domain errors shown on the form, the error summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask import Flask, Request, current_app
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from jinja2 import pass_context
from jinja2.runtime import Context
from wtforms import Form, StringField
from wtforms.validators import DataRequired, Length

from server.domain.errors import DomainError


class TextOnlyRequest(Request):
    """A request whose form data is text only: the hub takes no uploads anywhere.

    Flask-WTF gives forms ``request.files`` merged with ``request.form``, so a
    file sent under a text field's name (a crafted multipart post) reached the
    validators as a file object and crashed them: a 500. Dropped here, such a
    field is simply missing and gets the form's usual message.
    """

    def _load_form_data(self) -> None:
        super()._load_form_data()
        for uploads in self.__dict__["files"].listvalues():
            for upload in uploads:
                upload.close()
        self.__dict__["files"] = self.parameter_storage_class()


def public_form_limit() -> str:
    """Per-address limit on posting public forms (the bench WiFi is open)."""
    return current_app.config["PUBLIC_FORM_LIMIT"]


def receipt_lookup_limit() -> str:
    """Per-address limit on looking up receipt codes, so codes cannot be guessed."""
    return current_app.config["RECEIPT_LOOKUP_LIMIT"]


def attach_error(form: FlaskForm, error: DomainError, fields: dict[str, str] | None = None) -> None:
    """Show a domain refusal next to the field it is about, keeping what was typed.

    ``fields`` maps the domain's field names ("description") to form field
    names ("what") where they differ.
    """
    name = (fields or {}).get(error.field or "", error.field or "")
    field = getattr(form, name, None) if name else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)


def check_each(form: FlaskForm, checks: Mapping[str, Callable[[], object]],
               fields: dict[str, str] | None = None) -> bool:
    """Run the domain's checks on every field the form's own validators passed; True when all pass.

    A view that validates the form and then lets the domain refuse one thing
    at a time makes a person send the form once per mistake. ``checks`` maps
    a form field's name to a call that raises the domain's refusal for that
    field alone; each refusal is shown beside its field, all in one answer.
    Call it whether or not ``form.validate()`` passed.
    """
    passed = True
    for name, check in checks.items():
        if getattr(form, name).errors:
            passed = False  # its own message is already there: one mistake, one message
            continue
        try:
            check()
        except DomainError as error:
            passed = False
            target = getattr(form, (fields or {}).get(error.field or "", error.field or ""), None)
            if target is None or not getattr(target, "errors", None):  # a part its own validator refused already
                attach_error(form, error, fields)
    return passed


def validate_all(form: FlaskForm, checks: Mapping[str, Callable[[], object]],
                 fields: dict[str, str] | None = None) -> bool:
    """``validate_on_submit`` and then the domain's checks (``check_each``), every mistake reported in one answer."""
    if not form.is_submitted():
        return False
    valid = form.validate()
    return check_each(form, checks, fields) and valid


@dataclasses.dataclass(frozen=True)
class Problem:
    """One line of a page's error summary: the message and the id of what it links to."""

    message: str
    target: str


def form_errors_id(form: Form) -> str:
    """The id of the block macros.form_errors writes for ``form``'s own (not one field's) errors."""
    return f"{getattr(form, '_prefix', '')}form-errors"


def field_target(field: Any) -> str:
    """Where a link to ``field`` lands: the field itself, or the first of a group of radio buttons."""
    if field.type == "RadioField":
        return f"{field.id}-0"
    return field.id


def problems_of(form: Form) -> list[Problem]:
    """Every error on ``form``: its own first, then each field's, in the order the fields are on the page."""
    found = [Problem(str(message), form_errors_id(form)) for message in getattr(form, "form_errors", [])]
    for field in form:
        for message in field.errors if isinstance(field.errors, list | tuple) else ():
            if isinstance(message, str) or hasattr(message, "__html__"):
                found.append(Problem(str(message), field_target(field)))
    return found


def _forms_in(values: Any) -> Iterator[Form]:
    """The forms among a template's variables, and in a list of rows (a dataclass per row) one level down."""
    for value in values:
        if isinstance(value, Form):
            yield value
        elif isinstance(value, list | tuple) and value:
            # A page's lists are of one kind: look further only when the first holds forms (a list of
            # log entries is passed over at the cost of one look, not one per entry).
            if not any(isinstance(part, Form) for part in _parts(value[0])):
                continue
            for item in value:
                yield from (part for part in _parts(item) if isinstance(part, Form))


def _parts(item: Any) -> tuple[Any, ...]:
    if isinstance(item, Form):
        return (item,)
    if isinstance(item, list | tuple):
        return tuple(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return tuple(getattr(item, f.name) for f in dataclasses.fields(item))
    return ()


@pass_context
def page_errors(context: Context) -> list[Problem]:
    """Every error on every form the page was given: what base.html's summary lists at the top of the page.

    Found among the template's variables, so every form view gets the summary
    without asking for it: a form that came back with errors is always one the
    view passed to its template.
    """
    seen: set[int] = set()
    problems: list[Problem] = []
    for form in _forms_in(context.get_all().values()):
        if id(form) not in seen:
            seen.add(id(form))
            problems.extend(problems_of(form))
    return problems


def init_app(app: Flask) -> None:
    app.jinja_env.globals["page_errors"] = page_errors


def status_for(form: FlaskForm) -> int:
    """200 for a fresh form, 400 when it comes back with errors."""
    return 400 if form.errors or form.form_errors else 200


def receipt_code_field(example: str) -> StringField:
    """The field a neighbour types a receipt code into, to look a request up (``example``: a code of its kind)."""
    return StringField(
        lazy_gettext("Receipt code"),
        validators=[
            DataRequired(lazy_gettext("Please type the code from your receipt.")),
            # Generous for spaces and dashes typed by hand; a real code has 11 characters.
            Length(max=40, message=lazy_gettext("A receipt code is short, like %(example)s. Please check what you typed.",
                                     example=example)),
        ],
        render_kw={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"},
    )


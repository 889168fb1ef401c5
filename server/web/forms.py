"""What every form view shares: limits for public forms, and domain errors shown on the form."""

from __future__ import annotations

from flask import Request, current_app
from flask_wtf import FlaskForm
from wtforms import StringField
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


def status_for(form: FlaskForm) -> int:
    """200 for a fresh form, 400 when it comes back with errors."""
    return 400 if form.errors or form.form_errors else 200


def receipt_code_field(example: str) -> StringField:
    """The field a neighbour types a receipt code into, to look a request up (``example``: a code of its kind)."""
    return StringField(
        "Receipt code",
        validators=[
            DataRequired("Please type the code from your receipt."),
            # Generous for spaces and dashes typed by hand; a real code has 11 characters.
            Length(max=40, message=f"A receipt code is short, like {example}. Please check what you typed."),
        ],
        render_kw={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"},
    )


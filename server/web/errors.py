"""Friendly pages for everything that goes wrong.

Whatever a person typed is shown back on error pages (never passwords), so
a refused or failed form never costs them their words.
"""

from __future__ import annotations

import functools
import math
import time

from flask import Flask, g, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_limiter.errors import RateLimitExceeded
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from wtforms import HiddenField, IntegerField, PasswordField, StringField, TextAreaField

from server.db import HubBusy
from server.domain.errors import DomainError, NotFound
from server.domain.people import ROLE_LABELS
from server.extensions import db, limiter
from server.web import forms

_NOT_ECHOED = {"csrf_token", "password", "new_password", "confirm"}


def _all_form_classes() -> list[type[FlaskForm]]:
    found, waiting = [], [FlaskForm]
    while waiting:
        for sub in waiting.pop().__subclasses__():
            found.append(sub)
            waiting.append(sub)
    return found


@functools.cache
def _typed_fields() -> dict[str, object]:
    """Each form field a person types into, by its name, with its label (the first form's, where names repeat).

    Only these come back on an error page: a choice from a list, a hidden
    field or a button's value was not typed, and its value is a name inside
    the hub ("ask", "food", an area's number) that means nothing to the reader.
    """
    labels: dict[str, object] = {}
    for form_class in _all_form_classes():
        for name, unbound in vars(form_class).items():
            field_class = getattr(unbound, "field_class", None)
            if not isinstance(field_class, type) or not issubclass(field_class, StringField | TextAreaField | IntegerField):
                continue
            if issubclass(field_class, PasswordField | HiddenField):
                continue
            label = unbound.args[0] if unbound.args else unbound.kwargs.get("label")
            labels.setdefault(name, label or name.replace("_", " ").capitalize())
    return labels


def kept_fields() -> list[tuple[str, str]]:
    """What the person typed into the form they just sent: (the field's label, the text)."""
    if request.method != "POST":
        return []
    try:
        form = request.form
    except RequestEntityTooLarge:
        return []
    typed = _typed_fields()
    # A form with a prefix sends "grant-handle" or "renew-3-decision": known by the field's own name.
    return [(str(typed[field]), value) for name, value in form.items(multi=True)
            if (field := name.rpartition("-")[2]) in typed and field not in _NOT_ECHOED and value.strip()]


def _wait_words(error: RateLimitExceeded) -> str:
    """When to try again, in words: the end of the window the limit counts in."""
    current = limiter.current_limit
    if current is not None and current.breached:
        seconds = max(1.0, current.reset_at - time.time())
    else:
        seconds = float(error.limit.limit.get_expiry())
    if seconds < 90:
        return _("Please try again in a minute.")
    minutes = round(seconds / 60)  # the window's end, give or take the second it took to send
    if minutes < 90:
        return ngettext("Please try again in %(num)d minute.", "Please try again in %(num)d minutes.", minutes)
    hours = math.ceil(minutes / 60)
    return ngettext("Please try again in %(num)d hour.", "Please try again in %(num)d hours.", hours)


# What each rate-limited page does, in a neighbour's words; anything else is "sending forms".
_LIMITED = {
    "auth.login": lambda: _("logging in"),
    "mediation.status": lambda: _("looking up receipt codes"),
    "complaints.status": lambda: _("looking up receipt codes"),
    "aid.mine": lambda: _("looking up receipt codes"),
}


def _page(status: int, title: str, message: str, **extra: object) -> tuple[str, int]:
    return (
        render_template("error.html", status=status, title=title, message=message, kept=kept_fields(), **extra),
        status,
    )


def init_app(app: Flask) -> None:
    forms.init_app(app)  # a form's own errors: summed up at the top of its page

    @app.errorhandler(CSRFError)
    def csrf_failed(_error: CSRFError):
        return _page(
            400,
            _("This form had expired"),
            _("For your safety the hub only accepts a form it sent recently. Nothing was saved. Open the page "
              "again and send it once more; what you wrote is below."),
        )

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: RequestEntityTooLarge):
        return _page(
            413,
            _("That was too much to send"),
            _("The hub takes short texts only, and nothing was saved. Go back, shorten what you wrote, and send "
              "it again."),
        )

    @app.errorhandler(RateLimitExceeded)
    def too_many(error: RateLimitExceeded):
        # Plain words only: what was limited and when to try again, never the limit's own notation.
        wait = _wait_words(error)
        if getattr(error.limit.key_func, "per_handle", False):  # web/auth.py's throttle on one handle
            return _page(
                429,
                _("Too many wrong passwords for this handle"),
                _("The hub takes only a few wrong passwords for one handle, from whichever phone, so nobody "
                  "can guess a member's password by changing phones. Nothing was saved. %(wait)s "
                  "If these tries were not yours, tell a host.", wait=wait),
            )
        what = _LIMITED.get(request.endpoint or "", lambda: _("sending forms"))()
        return _page(
            429,
            _("Too many tries from this phone"),
            _("The bench WiFi is open to everyone, so the hub limits how often one phone can be used for "
              "%(what)s, and this phone has reached that limit for now. Nothing was saved. %(wait)s",
              what=what, wait=wait),
        )

    @app.errorhandler(HubBusy)
    def busy(_error: HubBusy):
        db.session.rollback()
        return _page(
            503,
            _("The hub is busy"),
            _("The hub could not save this just now, so nothing was saved. Please send it again in a moment; "
              "what you wrote is below."),
        )

    @app.errorhandler(NotFound)
    def domain_not_found(error: NotFound):
        return _page(404, _("Not found"), error.message)

    @app.errorhandler(DomainError)
    def domain_refused(error: DomainError):
        db.session.rollback()
        return _page(400, _("That could not be done"), error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 404:
            return _page(404, _("Page not found"), _("There is no page at this address. The bench page has everything."))
        if error.code == 403:
            wanted = sorted(getattr(g, "denied_roles", set()))
            needed = ", ".join(ROLE_LABELS.get(role, role) for role in wanted)
            message = _("This page is for people holding a role at the bench.")
            if needed:
                message = _("This page is for: %(needed)s. Roles lapse unless the assembly renews them.", needed=needed)
            return _page(403, _("Not for this account"), message)
        if error.code == 405:
            return _page(405, _("Not like that"), _("This page cannot be used that way. Start again from the bench "
                                                 "page."))
        return _page(error.code or 500, error.name, error.description or "")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        app.logger.exception("unexpected error on %s %s", request.method, request.path)
        db.session.rollback()
        return _page(
            500,
            _("Something went wrong at the hub"),
            _("This was the hub's fault, not yours, and it has been noted in the hub's log. Whatever you sent "
              "may not have been saved; it is shown below so you can send it again."),
        )

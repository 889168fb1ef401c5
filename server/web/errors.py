"""Friendly pages for everything that goes wrong.

Whatever a person typed is shown back on error pages (never passwords), so
a refused or failed form never costs them their words.
"""

from __future__ import annotations

from flask import Flask, g, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from server.db import HubBusy
from server.domain.errors import DomainError, NotFound
from server.domain.people import ROLE_LABELS
from server.extensions import db

_NOT_ECHOED = {"csrf_token", "password", "new_password", "confirm"}


def kept_fields() -> list[tuple[str, str]]:
    """What the person typed into the form they just sent."""
    if request.method != "POST":
        return []
    try:
        form = request.form
    except RequestEntityTooLarge:
        return []
    return [(name, value) for name, value in form.items(multi=True) if name not in _NOT_ECHOED and value.strip()]


def _page(status: int, title: str, message: str, **extra: object) -> tuple[str, int]:
    return (
        render_template("error.html", status=status, title=title, message=message, kept=kept_fields(), **extra),
        status,
    )


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(_error: CSRFError):  # noqa: ANN202
        return _page(
            400,
            "This form had expired",
            "For your safety the hub only accepts a form it sent recently. "
            "Nothing was saved. Open the page again and send it once more; what you wrote is below.",
        )

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: RequestEntityTooLarge):  # noqa: ANN202
        return _page(
            413,
            "That was too much to send",
            "The hub takes short texts only, and nothing was saved. "
            "Go back, shorten what you wrote, and send it again.",
        )

    @app.errorhandler(RateLimitExceeded)
    def too_many(error: RateLimitExceeded):  # noqa: ANN202
        if getattr(error.limit.key_func, "per_handle", False):  # web/auth.py's throttle on one handle
            return _page(
                429,
                "Too many wrong passwords for this handle",
                "The hub takes only a few wrong passwords for one handle, from whichever phone, so nobody "
                "can guess a member's password by changing phones. Nothing was saved. Please wait a while "
                f"and try again (limit: {error.description}). If these tries were not yours, tell a host.",
            )
        return _page(
            429,
            "Too many tries from this phone",
            "The bench WiFi is open to everyone, so the hub limits how often one phone can send. "
            f"Nothing was saved. Please wait a while and try again (limit: {error.description}).",
        )

    @app.errorhandler(HubBusy)
    def busy(_error: HubBusy):  # noqa: ANN202
        db.session.rollback()
        return _page(
            503,
            "The hub is busy",
            "The hub could not save this just now, so nothing was saved. "
            "Please send it again in a moment; what you wrote is below.",
        )

    @app.errorhandler(NotFound)
    def domain_not_found(error: NotFound):  # noqa: ANN202
        return _page(404, "Not found", error.message)

    @app.errorhandler(DomainError)
    def domain_refused(error: DomainError):  # noqa: ANN202
        db.session.rollback()
        return _page(400, "That could not be done", error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # noqa: ANN202
        if error.code == 404:
            return _page(404, "Page not found", "There is no page at this address. The bench page has everything.")
        if error.code == 403:
            wanted = sorted(getattr(g, "denied_roles", set()))
            needed = ", ".join(ROLE_LABELS.get(role, role) for role in wanted)
            message = "This page is for people holding a role at the bench."
            if needed:
                message = f"This page is for: {needed}. Roles lapse unless the assembly renews them."
            return _page(403, "Not for this account", message)
        if error.code == 405:
            return _page(405, "Not like that", "This page cannot be used that way. Start again from the bench page.")
        return _page(error.code or 500, error.name, error.description or "")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):  # noqa: ANN202
        app.logger.exception("unexpected error on %s %s", request.method, request.path)
        db.session.rollback()
        return _page(
            500,
            "Something went wrong at the hub",
            "This was the hub's fault, not yours, and it has been noted in the hub's log. "
            "Whatever you sent may not have been saved; it is shown below so you can send it again.",
        )

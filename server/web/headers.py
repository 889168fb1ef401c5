"""Response headers that keep pages from being framed, sniffed, kept, or leaking where people came from."""

from flask import Flask, Response, current_app, request
from flask_login import current_user

from server.web import counters
from server.web.access import audience_of

# Pages refuse scripts outright: a page with someone's sealed words on it cannot be made to run anyone's script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Three kinds of page may run the hub's own script files and nothing else (never inline, never another site's):
# the live log and the board (their own policy, web/live.py, with a connection back to the hub), and a page
# with a counted field (web/counters.py), which gets this one on its answer alone.
COUNTED_FIELD_POLICY = f"{CONTENT_SECURITY_POLICY}; script-src 'self'"


def set_headers(response: Response) -> Response:
    # A shared public page served from caching's inner layer is not rendered again, so it marks nothing:
    # were one to hold a counted field, its script would be refused and the page work as without JavaScript.
    response.headers.setdefault(
        "Content-Security-Policy", COUNTED_FIELD_POLICY if counters.page_has_counted_field() else CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # A receipt code or a host page address must not travel to another site.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not storable():
        # Not in the browser's cache, not in its back button's memory, not in
        # a proxy: a host page on a borrowed phone, or a neighbour's receipt
        # page on a shared laptop, is gone once the tab is closed.
        response.headers["Cache-Control"] = "no-store"
    return response


def storable() -> bool:
    """Whether a copy of this answer may be kept: only what the whole neighbourhood sees alike.

    That is the stylesheets, and the public read-only pages (the bench page,
    the public log, the audit: the ones caching.public_page marks) as an
    anonymous visitor sees them. Everything else is private in this sense:
    the member pages, a member's own view of a public page, and the public
    pages that show a visitor something of their own (a receipt, the status
    their receipt code opens, what they just sent) or carry their form.
    """
    endpoint = request.endpoint
    if endpoint == "static":
        return True
    if endpoint is None or audience_of(current_app, endpoint) is not None:
        return False
    view = current_app.view_functions[endpoint]
    return bool(getattr(view, "read_only", False)) and not current_user.is_authenticated


def init_app(app: Flask) -> None:
    counters.init_app(app)  # the fields that mark an answer for COUNTED_FIELD_POLICY
    app.after_request(set_headers)

"""Logging in and out of the hub."""

from __future__ import annotations

from urllib.parse import urlsplit

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
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from server.db import HubBusy
from server.domain import people
from server.domain.people import Member
from server.extensions import db, limiter
from server.web.access import SignedIn, now, public, save

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    # The hub's own words rather than WTForms' "This field is required."
    handle = StringField("Handle", validators=[
        DataRequired("Please type your handle."),
        Length(max=24, message="A handle has at most 24 characters. Please check what you typed."),
    ])
    password = PasswordField("Password", validators=[
        DataRequired("Please type your password."),
        Length(max=256, message="A password has at most 256 characters. Please check what you typed."),
    ])


def _safe_next(target: str | None) -> str:
    """Only ever redirect within the hub after login."""
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("host.dashboard")


def _login_limit() -> str:
    return current_app.config["LOGIN_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@public
def login() -> object:
    form = LoginForm()
    if form.validate_on_submit():
        member = people.find_member(db.session, form.handle.data)
        if not people.check_password(member, form.password.data):
            form.form_errors.append("That handle and password do not match.")
        elif not people.active_roles(db.session, member, now()):
            form.form_errors.append(people.why_nothing_opens(db.session, member, now()))
        else:
            # A new session at login: whatever was in the old one (a cookie or a
            # CSRF secret planted by someone on the open WiFi, a neighbour's
            # receipt code on a shared laptop) does not carry into the host's.
            session.clear()
            login_user(SignedIn(member))
            # Permanent, so the cookie and its signature age out PERMANENT_SESSION_LIFETIME
            # after the last request (refreshed on each one), instead of lasting for weeks.
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), 200 if not form.errors and not form.form_errors else 400


@bp.post("/logout")
@public
def logout() -> object:
    member_id = current_user.member.id if current_user.is_authenticated else None
    logout_user()
    # Everything goes, CSRF secret and receipt codes too: the next person at this browser starts afresh.
    session.clear()
    if member_id is None:
        flash("You are logged out.")
        return redirect(url_for("bench.index"))
    # And everywhere else: the session cookie is signed, not stored, so a copy
    # (taken off the open WiFi, or left on a phone that was taken) would keep
    # working until it ages out. Moving the member's session epoch ends it now.
    try:
        save(lambda s: people.end_sessions(s.get(Member, member_id)))
    except HubBusy:
        flash("You are logged out here, but the hub was too busy to end your other sessions. "
              "Log in and out again in a moment.")
    else:
        flash("You are logged out, on every device.")
    return redirect(url_for("bench.index"))

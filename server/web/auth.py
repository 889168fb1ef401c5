"""Logging in and out of the hub."""

from __future__ import annotations

import functools
import hmac
import logging
from pathlib import Path
from types import SimpleNamespace
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
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from server.db import HubBusy
from server.domain import people, power_record, sealing
from server.domain.errors import DomainError
from server.domain.people import Member
from server.extensions import db, limiter
from server.web import waiting
from server.web.access import UNLOCK_KEY, SignedIn, now, public, requires, save
from server.web.forms import attach_error
from server.web.keyring import keyring, lock_from_outside
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)


class LoginForm(FlaskForm):
    # The hub's own words rather than WTForms' "This field is required."
    handle = StringField(lazy_gettext("Handle"), validators=[
        DataRequired(lazy_gettext("Please type your handle.")),
        Length(max=24, message=lazy_gettext("A handle has at most 24 characters. Please check what you typed.")),
    ])
    password = PasswordField(lazy_gettext("Password"), validators=[
        DataRequired(lazy_gettext("Please type your password.")),
        Length(max=256, message=lazy_gettext("A password has at most 256 characters. Please check what you typed.")),
    ])


class DuressForm(FlaskForm):
    password = PasswordField(lazy_gettext("Your password"), validators=[
        DataRequired(lazy_gettext("Please type your password.")), Length(max=256, message=lazy_gettext("At most 256 characters."))])
    duress_password = PasswordField(lazy_gettext("Duress password"), validators=[
        DataRequired(lazy_gettext("Please type the duress password.")), Length(max=256, message=lazy_gettext("At most 256 characters."))])
    repeat = PasswordField(lazy_gettext("The duress password again"), validators=[
        DataRequired(lazy_gettext("Please type the duress password again.")),
        EqualTo("duress_password", message=lazy_gettext("The two duress passwords differ. Please type them again."))])


# The duress page shows both forms, each with a "password": the prefix keeps their ids (and labels) apart.
REMOVE = "remove"


class RemoveDuressForm(FlaskForm):
    password = PasswordField(lazy_gettext("Your password"), validators=[
        DataRequired(lazy_gettext("Please type your password.")), Length(max=256, message=lazy_gettext("At most 256 characters."))])


def _safe_next(target: str | None) -> str | None:
    """Only ever redirect within the hub after login."""
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return None


def _login_limit() -> str:
    return current_app.config["LOGIN_LIMIT"]


def _login_account_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_LIMIT"]


def _typed_handle() -> str:
    """The rate-limit key for the handle a login form names, matched as people.find_member matches it.

    Any handle typed counts, one on the roll or not, so the throttle tells
    nobody which handles exist. Kept as a keyed hash: Flask-Limiter logs the
    key of a limit it enforces (at INFO, which the hub keeps out of its logs,
    but someone repairing it may turn that up), and what lands in a handle
    field is sometimes a password typed one field too early.
    """
    try:
        typed = request.form.get("handle", "")
    except RequestEntityTooLarge:
        typed = ""  # the view answers with the hub's "too much to send" page
    secret = current_app.secret_key or ""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, typed.strip().lower()[:64].encode(), "sha256").hexdigest()[:32]
    return f"handle:{digest}"


_typed_handle.per_handle = True  # type: ignore[attr-defined]  # errors.py words its 429 page for a handle


def _login_refused(response: object) -> bool:
    """Only tries that did not log in count against a handle: its member's own login is never one of them."""
    return getattr(response, "status_code", 0) == 400


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_account_limit, methods=["POST"], key_func=_typed_handle, deduct_when=_login_refused)
@public
def login() -> object:
    form = LoginForm()
    if form.validate_on_submit():
        member = people.find_member(db.session, form.handle.data)
        password = form.password.data
        # With a key of their own, unwrapping it is the password check (authenticated encryption):
        # one memory-hard derivation per login, not two, which is what keeps a Pi's login under 2 s.
        # Every try costs that derivation (an unknown handle unwraps a decoy), and every wrong one a
        # password hash besides (the duress check, or a stand-in for it): neither the page nor a
        # stopwatch tells which handles exist, or who set a duress password.
        key = sealing.member_key(db.session, member) if member is not None else None
        private = sealing.open_member_key(key or _decoy_key(*sealing.kdf_cost()), password)
        right = private is not None or (key is None and people.check_password(member, password))
        duress = False
        if not right and key is not None:
            if key.duress_hash:
                duress = sealing.is_duress_password(db.session, member, password)
            else:
                people.check_password(None, password)  # the stand-in hash, as long as a duress check
        if not (right or duress):
            form.form_errors.append(_("That handle and password do not match."))
        elif not people.active_roles(db.session, member, now()):
            form.form_errors.append(people.why_nothing_opens(db.session, member, now()))
        else:
            if duress:
                # Someone is made to log in: every key the hub holds is forgotten
                # first, then an empty dashboard opens, looking like any other. Not
                # in the record of power used: it must not give the member away.
                lock_hub()
                unlocked = keyring().add(member.id, {}, now(), duress=True)
            else:
                try:
                    vaults, private = _open_keys_for(member, password, private)
                except HubBusy:
                    form.form_errors.append(_("The hub is very busy right now; please try again in a moment."))
                    return render_template("auth/login.html", form=form), 503
                unlocked = keyring().add(member.id, vaults, now(), member_private=private)
            # A new session at login: whatever was in the old one (a cookie or a
            # CSRF secret planted by someone on the open WiFi, a neighbour's
            # receipt code on a shared laptop) does not carry into the host's.
            session.clear()
            session[UNLOCK_KEY] = unlocked.token
            login_user(SignedIn(member, unlocked))
            # Permanent, so the cookie and its signature age out PERMANENT_SESSION_LIFETIME
            # after the last request (refreshed on each one), instead of lasting for weeks.
            session.permanent = True
            # Each role lands where its work is (web/waiting.py); a duress login on the dashboard, all it opens.
            landing = url_for("host.dashboard") if duress else waiting.landing_for(
                db.session, member, people.active_roles(db.session, member, now()))
            return redirect(_safe_next(request.args.get("next")) or landing)
    return render_template("auth/login.html", form=form), 200 if not form.errors and not form.form_errors else 400


@functools.cache
def _decoy_key(passes: int, memory_kib: int) -> SimpleNamespace:
    """A member key no password opens, made at the cost real ones are: what an unknown handle unwraps."""
    from nacl.secret import SecretBox
    from nacl.utils import random as random_bytes

    return SimpleNamespace(salt=random_bytes(16), kdf_passes=passes, kdf_memory_kib=memory_kib,
                           wrapped_private=SecretBox(random_bytes(SecretBox.KEY_SIZE)).encrypt(random_bytes(32)))


def _open_keys_for(member: Member, password: str, private: object) -> tuple[dict, object]:
    """The vault keys this login opens, by reading alone when it has nothing to write.

    So a login works while another process holds the database's write lock (a
    backup, the radio bridge catching up on a burst), as every page that only
    reads does: the host can still see what is wrong. A key to make, or grants
    to give or take, wait for the lock (``save``).
    """
    if private is not None:
        opened = sealing.open_grants(db.session, member, private)
        with db.session.no_autoflush:
            changes = sealing.sync(db.session, now(), {**keyring().opened_vaults(), **opened})
        if not changes:
            return opened, private
        db.session.rollback()  # what sync changed here is done again, in a write transaction
    return save(lambda s: _open_keys(s, member.id, password, private))


def _open_keys(db_session: Session, member_id: int, password: str, private: object) -> tuple[dict, object]:
    """Unwrap the member's own key with their password and open every vault key granted to them.

    A member from before sealed storage gets their key pair now (only now is
    their password at hand); then grants follow roles, with every vault key
    this process holds (``sealing.sync``), so a new reader is given theirs
    by anyone's login, and their own login picks up what waited for them.
    """
    member = db_session.get(Member, member_id)
    if private is None:
        private = sealing.give_member_key(member, password, now())
        db_session.flush()
    opened = sealing.open_grants(db_session, member, private)
    if sealing.sync(db_session, now(), {**keyring().opened_vaults(), **opened}):
        db_session.flush()
        opened = sealing.open_grants(db_session, member, private)
    return opened, private


def lock_hub() -> int:
    """Forget every opened key in this process, and tell every other hub process to (instance/locked).

    This process forgets first: a lock file that cannot be written (a full or
    read-only card) must not leave the keys here in memory.
    """
    ended = keyring().forget_all()
    try:
        lock_from_outside(Path(current_app.config["INSTANCE"]))
    except OSError as error:
        log.error("hub locked here, but the lock file could not be written: %s", error.strerror)
    return ended


@bp.post("/lock")
@requires()
def lock() -> object:
    """"Lock the hub now": every login ends and every sealed record closes, this second; the record says who."""
    member_id = current_user.member.id
    ended = lock_hub()
    logout_user()
    session.clear()
    log.warning("hub locked from the web: %d login(s) ended", ended)
    flash(_("The hub is locked: every login has ended and every sealed record is closed. Readers open them again "
            "by logging in."))
    try:
        save(lambda s: _record_lock(s, s.get(Member, member_id)))
    except HubBusy:
        flash(_("The hub was too busy to write this lock into the record of power used; the lock itself holds."))
    return redirect(url_for("bench.index"))


def _record_lock(db_session: Session, member: Member) -> None:
    power_record.record(db_session, now(), actor=member,
                        role=power_record.acting_role(db_session, now(), member, people.ROLES),
                        action="hub-locked", subject="every login", reason="Lock the hub now, on the hub's pages")


def _duress_page(form: DuressForm, remove_form: RemoveDuressForm) -> object:
    key = sealing.member_key(db.session, current_user.member)
    status = 400 if form.errors or form.form_errors or remove_form.errors or remove_form.form_errors else 200
    return render_template("auth/duress.html", form=form, remove_form=remove_form,
                           has_duress=bool(key and key.duress_hash)), status


@bp.route("/duress", methods=["GET", "POST"])
@requires()
def duress() -> object:
    form = DuressForm()
    if form.validate_on_submit():
        if not people.check_password(current_user.member, form.password.data):
            form.password.errors.append(_("That is not your password."))
        else:
            member_id = current_user.member.id
            try:
                save(lambda s: sealing.set_duress_password(s, s.get(Member, member_id), form.duress_password.data))
            except DomainError as error:
                attach_error(form, error)
            except sealing.SealingError:
                form.form_errors.append(_("Log out and in again with your own password first, then set it."))
            else:
                flash(_("Your duress password is set. Keep it as well as your own."))
                return redirect(url_for("host.dashboard"))
    return _duress_page(form, RemoveDuressForm(formdata=None, prefix=REMOVE))


@bp.post("/duress/remove")
@requires()
def remove_duress() -> object:
    form = RemoveDuressForm(prefix=REMOVE)
    if form.validate_on_submit():
        if not people.check_password(current_user.member, form.password.data):
            form.password.errors.append(_("That is not your password."))
        else:
            member_id = current_user.member.id
            save(lambda s: sealing.set_duress_password(s, s.get(Member, member_id), None))
            flash(_("Your duress password is removed."))
            return redirect(url_for("host.dashboard"))
    return _duress_page(DuressForm(formdata=None), form)


@bp.post("/logout")
@public
def logout() -> object:
    member_id = current_user.member.id if current_user.is_authenticated else None
    keyring().forget(session.get(UNLOCK_KEY))
    logout_user()
    # Everything goes, CSRF secret and receipt codes too: the next person at this browser starts afresh.
    session.clear()
    if member_id is None:
        flash(_("You are logged out."))
        return redirect(url_for("bench.index"))
    # And everywhere else: the session cookie is signed, not stored, so a copy
    # (taken off the open WiFi, or left on a phone that was taken) would keep
    # working until it ages out. Moving the member's session epoch ends it now.
    try:
        save(lambda s: people.end_sessions(s.get(Member, member_id)))
    except HubBusy:
        flash(_("You are logged out here, but the hub was too busy to end your other sessions. Log in and out "
                "again in a moment."))
    else:
        flash(_("You are logged out, on every device."))
    return redirect(url_for("bench.index"))

"""Who may open which page, checked before every request.

Every view declares its audience with ``@public`` or ``@requires(...)``. A
view that declares nothing is refused to everyone, so a new page is private
until someone decides otherwise. Roles are checked against the clock on
every request: a role that lapsed a minute ago no longer opens anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_login import UserMixin, current_user

from server.db import run_in_transaction
from server.domain import people, sealing
from server.domain.people import Member
from server.extensions import db, login_manager
from server.web.keyring import Unlocked, keyring, open_new_grants
from flask_babel import lazy_gettext

F = TypeVar("F", bound=Callable[..., Any])
ANY_ROLE = "any role"
UNLOCK_KEY = "unlock"  # the session's token for the keys its login opened (web/keyring.py)
# All a duress login can open: an empty-looking dashboard, and the way out.
DURESS_PAGES = frozenset({"host.dashboard", "auth.logout", "auth.lock"})


def public(view: F) -> F:
    view.audience = None  # type: ignore[attr-defined]
    return view


def requires(*roles: str) -> Callable[[F], F]:
    """Only members holding one of ``roles`` (or, with none named, any role)."""

    def mark(view: F) -> F:
        view.audience = frozenset(roles) or frozenset({ANY_ROLE})  # type: ignore[attr-defined]
        return view

    return mark


def audience_of(app: Flask, endpoint: str) -> frozenset[str] | None | bool:
    """``None`` for public, a set of roles, or ``False`` when undeclared."""
    if endpoint == "static":
        return None
    view = app.view_functions.get(endpoint)
    return getattr(view, "audience", False)


class SignedIn(UserMixin):
    """The logged-in member, as Flask-Login wants it, with the keys their login opened."""

    def __init__(self, member: Member, unlocked: Unlocked | None = None) -> None:
        self.member = member
        self.id = member.id
        self.unlocked = unlocked

    @property
    def duress(self) -> bool:
        return bool(self.unlocked and self.unlocked.duress)

    def get_id(self) -> str:
        # What Flask-Login keeps in the session: the member and the session
        # epoch they logged in under (people.end_sessions moves it on).
        return f"{self.member.id}.{self.member.session_epoch}"

    @property
    def handle(self) -> str:
        return self.member.handle


def now() -> datetime:
    return current_app.config["CLOCK"]()


def save(work: Callable[..., Any]) -> Any:
    """Run a unit of domain work in a transaction, retrying while the database is locked."""
    return run_in_transaction(db.session, work, attempts=current_app.config["DB_RETRY_ATTEMPTS"])


def current_roles() -> set[str]:
    if "roles" not in g:
        # A duress login holds no role at all: it sees an empty dashboard, and nothing else opens.
        signed_in = current_user.is_authenticated and not current_user.duress
        g.roles = people.active_roles(db.session, current_user.member, now()) if signed_in else set()
    return g.roles


def open_vaults() -> dict[str, Any]:
    """The vault keys this request may open: those the login opened, narrowed to the roles in force now."""
    if not current_user.is_authenticated or current_user.unlocked is None:
        return {}
    if "open_vaults" not in g:
        # Once a request: a page opens every sealed note with the same keys, and looking for new
        # grants is a query or two (a vault none of its readers has a key to yet looks every time).
        readable = sealing.vaults_for(current_roles())
        entry = current_user.unlocked
        open_new_grants(db.session, now(), current_user.member, entry, readable, keyring().opened_vaults(),
                        attempts=current_app.config["DB_RETRY_ATTEMPTS"])
        g.open_vaults = {vault: key for vault, key in entry.vaults.items() if vault in readable}
    return g.open_vaults


def unsealed(value: str | None) -> str | None:
    """The words in a sealed value for this reader, or None when they may not open it (or it is empty)."""
    try:
        return sealing.open_text(value, open_vaults())
    except sealing.SealingError:
        return None


def holds(*roles: str) -> bool:
    held = current_roles()
    return bool(held & set(roles)) if roles else bool(held)


def _check_access() -> Any:
    if request.endpoint is None:
        return None  # unknown URL: the 404 handler answers
    audience = audience_of(current_app, request.endpoint)
    if audience is None:
        return None
    if current_user.is_authenticated and current_user.duress:
        # Holds no role (current_roles), so the dashboard is let through here, not by its audience.
        return None if request.endpoint in DURESS_PAGES else redirect(url_for("host.dashboard"))
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if audience is False:
        abort(403)
    wanted = set() if ANY_ROLE in audience else set(audience)
    if not holds(*wanted):
        g.denied_roles = wanted
        abort(403)
    return None


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = lazy_gettext("Please log in to see that page.")

    @login_manager.user_loader
    def load_user(user_id: str) -> SignedIn | None:
        member_id, _, epoch = user_id.partition(".")
        member = db.session.get(Member, int(member_id)) if member_id.isdigit() else None
        if member is None or not member.password_hash or epoch != str(member.session_epoch):
            return None  # gone, or logged out everywhere since this session began
        # The login lives as long as the keys it opened: locked, idle, too old or
        # a restart since, and the cookie is nobody's (web/keyring.py).
        unlocked = keyring().get(session.get(UNLOCK_KEY), now())
        if unlocked is None or unlocked.member_id != member.id:
            return None
        return SignedIn(member, unlocked)

    app.before_request(_check_access)

    @app.context_processor
    def inject_access() -> dict[str, Any]:
        return {"holds": holds, "current_roles": current_roles, "unsealed": unsealed}

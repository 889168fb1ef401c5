"""The live log's polls answered in front of Flask: what a crowd of watchers costs the bench page.

With every stream slot taken, each further watcher asks ``/host/live/events``
twice a second and gets what is new at once (web/live.py). Through Flask
such an answer cost about 2-3 ms of the web process's one interpreter
(session, login, hooks, four ORM statements), 200 times a second for a
hundred watchers: the bench page waited behind it. ``QuickPolls`` answers
that request before Flask runs, with the same checks, in a fraction of that:

- the session cookie's signature is checked as Flask checks it (a cookie
  once verified is remembered until its signature would expire);
- the login's keys must still be in the keyring (a lock, a logout, an idle
  spell or the login's lifetime end it, as on every page), and not a duress
  login's;
- the member, their session epoch (logged out everywhere), their password
  and their roles in force on the hub's clock are read on every poll, in two
  SQL statements on a bare connection, never remembered: a role that lapsed
  or was suspended a moment ago opens nothing;
- the answer itself is ``live.first_answer``, the one a slotless request
  gets through Flask: the shared reader's events, narrowed to the roles and
  opened with the login's own key to the log.

Anything else goes to Flask, which answers as it always did: a free slot (a
held stream), no or a bad cookie, a login that may not watch (its redirect,
its 403), the captive portal's strangers, or a key to the log the login
lacks while a grant or a waiting key could give it one (Flask opens it; the
next poll is quick again). So this layer only ever gives the answer Flask
would have given, minus Flask-Login marking the session not fresh for a new
address (``_fresh``, which nothing in the hub reads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from itsdangerous import BadSignature
from sqlalchemy import bindparam, select
from werkzeug.http import parse_cookie

from server import i18n
from server.domain import patrol, people, sealing
from server.extensions import db
from server.web import live
from server.web.access import UNLOCK_KEY
from server.web.captive import is_own_host
from server.web.headers import CONTENT_SECURITY_POLICY
from server.web.host import LOG_ROLES
from server.web.keyring import EXTENSION_KEY as KEYRING_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from sqlalchemy.engine import Engine

ENDPOINT = "live.events"
EXTENSION_KEY = live.POLLS_KEY  # also read by an open stream's checks (live.LogReader.why_not_watching)
SESSIONS_KEPT = 512  # verified cookies remembered; beyond, forgotten at once (a few hosts hold one each)
# What Flask sends with a slotless answer (live.events, web/headers.py, web/languages.py);
# tests/test_crowd.py compares the two.
HEADERS = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Accel-Buffering", "no"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Vary", "Accept-Language, Cookie"),
)

# Built once (with parameters): building a statement costs more than running it.
_MEMBER = select(people.Member.session_epoch, people.Member.password_hash.is_not(None)).where(
    people.Member.id == bindparam("member"))
_ROLES = people.roles_in_force(bindparam("member"), bindparam("now"))
# A grant of a key the login lacks, or such a key waiting on the card for its first reader.
_KEY_TO_OPEN = (
    select(sealing.VaultGrant.vault).where(sealing.VaultGrant.member_id == bindparam("member"),
                                           sealing.VaultGrant.vault.in_(bindparam("vaults", expanding=True)))
    .union_all(select(sealing.VaultKey.vault).where(sealing.VaultKey.vault.in_(bindparam("vaults", expanding=True)),
                                                    sealing.VaultKey.pending_private.is_not(None)))
    .limit(1)
)



class _Compiled:
    """A statement compiled once for the engine's dialect, run on a DB-API cursor with SQLAlchemy's own
    conversion of each parameter (a datetime as the DateTime column stores it)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        # SQLite's driver takes ? in order; psycopg (PostgreSQL) takes %(name)s from a dict.
        self.positional = compiled.positiontup is not None
        self.names = list(compiled.positiontup) if self.positional else list(compiled.binds)
        self.convert = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                        for name, bind in compiled.binds.items()}

    def run(self, cursor: Any, params: dict[str, Any]) -> Any:
        values = {}
        for name in dict.fromkeys(self.names):
            convert = self.convert.get(name)
            values[name] = convert(params[name]) if convert else params[name]
        cursor.execute(self.sql, [values[name] for name in self.names] if self.positional else values)
        return cursor


class QuickPolls:
    """WSGI middleware: a slotless poll of the live log by a login that may watch, answered before Flask."""

    def __init__(self, wsgi_app: WSGIApplication, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self.path: str | None = None  # the stream's address, from the URL map once routes are in
        self._engine: Engine | None = None
        self._member: _Compiled | None = None
        self._roles: _Compiled | None = None
        # cookie -> (session data, when its signature expires): HMAC once per cookie, not per poll.
        self._sessions: dict[str, tuple[dict[str, Any], float]] = {}
        self._guard = threading.Lock()

    def forget_sessions(self) -> None:
        """A lock: the login tokens remembered here go too (they open nothing without the keyring's keys)."""
        with self._guard:
            self._sessions.clear()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.path is None:
            self.path = next(rule.rule for rule in self.app.url_map.iter_rules(ENDPOINT))
        if environ.get("PATH_INFO") == self.path and environ.get("REQUEST_METHOD") == "GET":
            body = self.answer(environ)
            if body is not None:
                # With its length, unlike a stream: the connection stays open for the browser's next poll
                # (waitress closes it after a chunked answer), so a crowd is not a crowd of new connections.
                start_response("200 OK", [*HEADERS, ("Content-Length", str(len(body)))])
                return [body]
        return self.wsgi_app(environ, start_response)

    def answer(self, environ: WSGIEnvironment) -> bytes | None:
        """The slotless answer, or None to leave the request to Flask."""
        app = self.app
        slots = app.extensions[live.SLOTS_KEY]
        if slots.acquire(blocking=False):
            slots.release()
            return None  # a slot is free: Flask holds the stream
        if app.config["CAPTIVE_PORTAL"] and not is_own_host(
                environ.get("HTTP_HOST", ""), (urlsplit(app.config["BENCH_URL"]).hostname or "").lower(),
                app.extensions["captive_machine_name"]):
            return None
        jar = parse_cookie(environ.get("HTTP_COOKIE", ""))
        session = self._session(jar.get(app.config["SESSION_COOKIE_NAME"]))
        if session is None or "_flashes" in session:
            return None
        member_id, _, epoch = str(session.get("_user_id", "")).partition(".")
        if not member_id.isdigit():
            return None
        moment = app.config["CLOCK"]()
        unlocked = app.extensions[KEYRING_KEY].get(session.get(UNLOCK_KEY), moment)
        if unlocked is None or unlocked.member_id != int(member_id) or unlocked.duress:
            return None
        vaults = self.standing(int(member_id), epoch, moment, unlocked)
        if vaults is None:
            return None
        roles, opened = vaults
        # As web/languages.py does for every request: whatever the stream writes, in the watcher's language.
        language = i18n.set_active(i18n.choose(jar.get(i18n.COOKIE), environ.get("HTTP_ACCEPT_LANGUAGE"),
                                               i18n.hub_language()))
        try:
            reader = live.LogReader(app, patrol.kinds_hidden_from(roles), opened)
            after = parse_qs(environ.get("QUERY_STRING", "")).get("after", [None])[0]
            retry = app.extensions[live.SLOTLESS_KEY].retry_ms(environ.get("REMOTE_ADDR"))
            text, _last_id = live.first_answer(reader, live.last_id_of(environ.get("HTTP_LAST_EVENT_ID"), after),
                                               retry)
        finally:
            i18n.reset_active(language)
        return text.encode()

    def _session(self, cookie: str | None) -> dict[str, Any] | None:
        """The session in ``cookie`` if its signature holds (as Flask's session interface checks it)."""
        if not cookie:
            return None
        known = self._sessions.get(cookie)
        if known is not None and known[1] > time.time():
            return known[0]
        interface = self.app.session_interface
        serializer = interface.get_signing_serializer(self.app)  # type: ignore[attr-defined]
        if serializer is None:
            return None
        max_age = int(self.app.permanent_session_lifetime.total_seconds())
        try:
            data, signed = serializer.loads(cookie, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        with self._guard:
            if len(self._sessions) >= SESSIONS_KEPT:
                self._sessions.clear()
            self._sessions[cookie] = (data, signed.timestamp() + max_age)
        return data

    def standing(self, member_id: int, epoch: str, moment: Any, unlocked: Any) -> tuple[set[str], dict] | None:
        """The member's roles in force and the log key they may open now; None if they may not watch, or
        a key could be opened for them: then the full check (Flask's, or the held stream's) answers."""
        if self._engine is None:
            with self.app.app_context():
                engine = db.engine
            self._member, self._roles = _Compiled(_MEMBER, engine.dialect), _Compiled(_ROLES, engine.dialect)
            self._engine = engine  # last: another thread seeing it finds the statements ready
        params = {"member": member_id, "now": moment}
        # The DB-API connection itself (from the same pool, with its pragmas): on these two statements,
        # run 200 times a second by a crowd, SQLAlchemy's own work cost more than SQLite's.
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                member = self._member.run(cursor, params).fetchone()
                if member is None or not member[1] or str(member[0]) != epoch:
                    return None  # gone, no password, or logged out everywhere: Flask sends them to log in
                roles = {role for (role,) in self._roles.run(cursor, params).fetchall()}
            finally:
                cursor.close()
        finally:
            raw.close()
        if not roles & set(LOG_ROLES):
            return None
        readable = sealing.vaults_for(roles) & live.LIVE_VAULTS
        missing = readable - unlocked.vaults.keys()
        if missing and unlocked.member_private is not None:
            with self._engine.connect() as connection:
                if connection.execute(_KEY_TO_OPEN, {"member": member_id, "vaults": list(missing)}).first():
                    return None  # a key this login can open now: Flask opens it (live._live_vaults)
        return roles, {vault: key for vault, key in unlocked.vaults.items() if vault in readable}


def init_app(app: Flask) -> None:
    """In front of everything (caching's shared answers included): a poll never reaches them."""
    polls = app.extensions[EXTENSION_KEY] = QuickPolls(app.wsgi_app, app)
    app.wsgi_app = polls  # type: ignore[method-assign]
    app.extensions[KEYRING_KEY].on_emptied.append(polls.forget_sessions)

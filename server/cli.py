"""The ``safebench`` command: a Flask CLI group over the app factory.

Every command uses the instance folder from ``SAFEBENCH_INSTANCE`` (default
``./instance``), so the hub, the worker and a host's terminal all see the
same database.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from server.db import HubBusy, run_in_transaction
from server.domain import mandates, patrol, people, radio_trust
from server.domain.errors import DomainError
from server.extensions import db
from server.i18n import gettext as _


def _create_app() -> Flask:
    from server import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False, add_version_option=False)
def main() -> None:
    """Safe Bench: the hub behind the bench."""


def _now():  # noqa: ANN202
    return current_app.config["CLOCK"]()


def with_schema(command: Callable[..., Any]) -> Callable[..., Any]:
    """Like Flask's ``with_appcontext``, with the database brought to the newest schema first.

    For every command that reads or writes the database, so that the first
    one typed on a new instance (before ``safebench up`` ever ran), or after
    an upgrade, finds its tables. One query when the schema is current.
    """

    def schema_first(*args: Any, **kwargs: Any) -> Any:
        from server.migrating import ensure_schema

        ensure_schema(current_app._get_current_object())
        return command(*args, **kwargs)

    return with_appcontext(functools.update_wrapper(schema_first, command))


def _save(work):  # noqa: ANN001, ANN202
    """Commit domain work from a command, turning refusals into plain messages."""
    try:
        return run_in_transaction(db.session, work, attempts=current_app.config["DB_RETRY_ATTEMPTS"])
    except DomainError as error:
        raise click.ClickException(error.message) from None
    except HubBusy as error:
        raise click.ClickException(_("%(error)s Try again in a moment.", error=error)) from None


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Flask-Limiter says at INFO which address went over a limit on which page: an
    # IP address with an endpoint, kept by journald for a week. The refusal is enough.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)


def _term_days() -> int:
    return int(current_app.config["ROLE_TERM_DAYS"])


# -- running the hub ----------------------------------------------------------


@click.command("serve")
@click.option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 on the bench WiFi).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@with_appcontext
def serve_command(host: str | None, port: int | None) -> None:
    """Run the web hub with waitress, after applying pending migrations."""
    from server.migrating import schema_ready
    from server.serving import create_server

    _logging()
    app = current_app._get_current_object()
    # One query when current; else a short-lived `safebench migrate` child, as the bridge does, so that
    # Alembic (11 MB) never stays in the web server's memory.
    if not schema_ready(Path(app.instance_path), app.config):
        raise click.ClickException(_("the database could not be brought to the newest schema; see the messages "
                                     "above."))
    host = host or app.config["HOST"]
    port = port or int(app.config["PORT"])
    click.echo(_("Safe Bench hub on http://%(host)s:%(port)s/  (instance: %(instance_path)s)",
                 host=host, port=port, instance_path=app.instance_path))
    # waitress with a cap per address and a deadline per request: see server/serving.py.
    server = create_server(app, host, port)
    # SIGTERM (systemd, safebench up) as an exit, which waitress stops on: the WAL is truncated on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    finally:
        _truncate_wal()


@click.command("worker")
def worker_command() -> None:
    """Run the scheduler on its own: for a hub with no radio bridge. Run exactly one.

    `safebench up` and the bridge's systemd unit run the scheduler inside the
    bridge (`safebench bridge --with-scheduler`); a second scheduler waits.
    \f
    `safebench worker` normally never gets here: server/entry.py sends it
    straight to the Flask-free scheduler. This is the way in for `-e FILE`;
    it becomes that same process (exec, same pid).
    """
    _exec_lean("worker")


@click.command("up")
@click.option("--host", help="Address for the web hub (default 127.0.0.1).")
@click.option("--port", type=int, help="Port for the web hub (default 8080).")
@click.option("--radio", help="The radio for the bridge (default: the RADIO setting, else the simulated radio).")
def up_command(host: str | None, port: int | None, radio: str | None) -> None:
    """Run the whole hub on one machine: web server, and radio bridge with the scheduler, supervised.
    \f
    Like `worker`: server/entry.py sends `safebench up` to the supervisor
    (server/supervisor.py), which loads neither Flask nor SQLAlchemy.
    """
    _exec_lean("up", *(["--host", host] if host else []), *(["--port", str(port)] if port else []),
               *(["--radio", radio] if radio else []))


def _exec_lean(*args: str) -> None:
    """Become ``python -m server ARGS``, which server/entry.py runs without Flask (exec: same pid)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "server", *args])


def _truncate_wal() -> None:
    """On a clean stop: the database's WAL copied in and truncated, so no old page stays beside it."""
    from server.db import checkpoint

    db.session.remove()
    checkpoint(db.engine)
    db.engine.dispose()


@click.command("bridge")
@click.option("--radio", help="serial:/dev/ttyUSB0, serial:auto, tcp:HOST[:PORT] or sim (default: the "
              "instance's RADIO setting, else sim).")
@click.option("--with-scheduler", is_flag=True, help="Run the scheduled jobs in the bridge too (as `safebench up` "
              "and the systemd unit do) instead of `safebench worker`.")
def bridge_command(radio: str | None, with_scheduler: bool) -> None:
    """Run the radio bridge: check-ins in, alerts out. Run exactly one per radio.

    It brings the database to the newest schema itself before it opens the radio.
    \f
    `safebench bridge` normally never gets here: server/entry.py sends it
    straight to the lean bridge process. This is the way in for `-e FILE` and
    for `--help`; it becomes that same process (exec, same pid).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "radio_bridge"] + (["--radio", radio] if radio else []) + \
        (["--with-scheduler"] if with_scheduler else [])
    os.execv(sys.executable, argv)


@click.command("migrate")
@with_appcontext
def migrate_command() -> None:
    """Apply pending schema migrations (serve, worker and up do it when they start; the bridge asks for it)."""
    from server.migrating import apply_migrations

    _logging()
    apply_migrations(current_app._get_current_object())
    click.echo(_("The database schema is up to date."))


@click.command("alert")
@click.argument("text")
@click.option("--urgent", is_flag=True, help="Urgent: goes before everything else, with the bell.")
@with_schema
def alert_command(text: str, urgent: bool) -> None:
    """Queue a broadcast to every handheld on the patrol channel."""
    from server.domain import outbox

    priority = outbox.URGENT if urgent else outbox.NORMAL
    messages = _save(lambda s: outbox.queue_message(s, _now(), text, priority=priority, bell=urgent))
    if len(messages) > 1:
        click.echo(_("Queued in %(n)d parts as %(priority)s; the bridge sends it in its next free slot.",
                     n=len(messages), priority=outbox.PRIORITIES[priority]))
    else:
        click.echo(_("Queued as %(priority)s; the bridge sends it in its next free slot.",
                     priority=outbox.PRIORITIES[priority]))


@click.command("run-jobs")
@with_schema
def run_jobs_command() -> None:
    """Run every scheduled job once, now (for cron, or to test a purge)."""
    from server.scheduler import JOBS, run_all_once

    for job, outcome in zip(JOBS, run_all_once(current_app._get_current_object()), strict=True):
        click.echo(f"{job.name}: {outcome or _('database busy, not run')}")


# -- rapid response -----------------------------------------------------------


@click.command("sos")
@click.argument("where", nargs=-1, required=True)
@click.option("--who", help="The handle of the steward in danger (default: nobody named, the hub raises it).")
@with_schema
def sos_command(where: tuple[str, ...], who: str | None) -> None:
    """Raise an SOS from the hub's terminal: an urgent broadcast with the bell to every handheld."""
    from server.domain import alerts

    def work(session):  # noqa: ANN001, ANN202
        member = people.get_member(session, who) if who else None
        return alerts.raise_sos(session, _now(), member, " ".join(where), patrol.SOURCE_CLI)

    alert = _save(work)
    if alert.place:
        click.echo(_("SOS %(code)s raised for %(who)s at %(place)s: queued as urgent, with the bell. Stewards "
                     "answer ACK %(code)s; follow it on /host/alerts.", code=alert.code, who=alert.who,
                     place=alert.place))
    else:
        click.echo(_("SOS %(code)s raised for %(who)s: queued as urgent, with the bell. Stewards answer "
                     "ACK %(code)s; follow it on /host/alerts.", code=alert.code, who=alert.who))


@click.group("drill")
def drill_group() -> None:
    """Rehearse the worst night: a mock SOS or a mock arrest, marked DRILL everywhere, timed for the assembly."""


def _start_drill(kind: str, where: str | None) -> None:
    from server.domain import alerts, cases, drills

    hotline = current_app.config["LEGAL_HOTLINE"]
    drill = _save(lambda s: drills.start(s, _now(), kind, None, where, hotline=hotline))
    if drill.alert_id is not None:
        click.echo(_("Drill %(id)s started: %(kind)s, alert %(code)s, marked DRILL on the air.", id=drill.id,
                     kind=drills.KINDS[kind], code=db.session.get(alerts.Alert, drill.alert_id).code))
    else:
        click.echo(_("Drill %(id)s started: %(kind)s, case %(code)s, marked DRILL on the air.", id=drill.id,
                     kind=drills.KINDS[kind], code=db.session.get(cases.ArrestCase, drill.case_id).code))
    click.echo(_("End it with: safebench drill end %(id)s; read it with: safebench drill report %(id)s", id=drill.id))


@drill_group.command("sos")
@click.option("--where", help="The pretend place (default: the bench).")
@with_schema
def drill_sos(where: str | None) -> None:
    """Start a mock SOS and print the drill's id."""
    _start_drill("sos", where)


@drill_group.command("arrest")
@click.option("--where", help="The pretend place (default: the bench).")
@with_schema
def drill_arrest(where: str | None) -> None:
    """Start a mock arrest case and print the drill's id."""
    _start_drill("arrest", where)


@drill_group.command("end")
@click.argument("drill_id", type=click.IntRange(1))
@with_schema
def drill_end(drill_id: int) -> None:
    """End drill DRILL_ID: its alert is resolved, its case closed, and its report kept."""
    from server.domain import drills

    drill = _save(lambda s: drills.end(s, _now(), drills.get_drill(s, drill_id), None))
    click.echo(drills.report_text(db.session, drill), nl=False)


@drill_group.command("report")
@click.argument("drill_id", type=click.IntRange(1))
@with_schema
def drill_report(drill_id: int) -> None:
    """Print the report of drill DRILL_ID: the time from the notice to each first action."""
    from server.domain import drills

    try:
        drill = drills.get_drill(db.session, drill_id)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    click.echo(drills.report_text(db.session, drill), nl=False)


# -- people -------------------------------------------------------------------


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


def _term_cap() -> int:
    try:
        return people.term_cap(current_app.config["ROLE_TERM_CAP_DAYS"])
    except DomainError as error:
        raise click.ClickException(error.message) from None


def _decision(decided_on: str | None, place: str | None, words: str | None) -> people.Decision:
    """The assembly decision named by --decided-on, --at and --decision, checked against the clock."""
    if not decided_on:
        raise click.ClickException(_("Name the day of the assembly's decision with --decided-on YYYY-MM-DD."))
    if not place:
        raise click.ClickException(_("Name the meeting or place of the decision with --at, e.g. --at 'assembly "
                                     "at the library'."))
    try:
        return people.parse_decision(_now(), decided_on, place, words)
    except DomainError as error:
        raise click.ClickException(error.message) from None


def _countersign_hint(handle: str, role: str) -> str:
    who = "a host or a captain" if role == people.STEWARD else "a host"
    return (f"It opens nothing until {who} countersigns it: on the roles page, or here with "
            f"'safebench role countersign {handle} {role} --as THEIR_HANDLE' (their password on standard input).")


@click.command("create-host")
@click.argument("name")
@click.option("--decision", default="first host, set up at the bench", show_default=True,
              help="The words of the assembly decision that made them host.")
@click.option("--decided-on", metavar="YYYY-MM-DD", help="The day of that decision (default: today).")
@click.option("--at", "place", default="the bench", show_default=True, help="The meeting or place of that decision.")
@with_schema
def create_host_command(name: str, decision: str, decided_on: str | None, place: str) -> None:
    """Create a host: in force while the hub has no active host, otherwise pending a host's countersign.

    The password is read from standard input when it is not a terminal.
    """
    from server.migrating import apply_migrations

    apply_migrations(current_app._get_current_object())
    password = _read_password()
    ruling = _decision(decided_on or _now().date().isoformat(), place, decision)
    term, cap = min(_term_days(), _term_cap()), _term_cap()
    assignment = _save(lambda s: mandates.create_host(s, _now(), name, password, decision=ruling, term_days=term,
                                                      cap_days=cap))
    if assignment.countersigned_at is not None:
        click.echo(_("Host %(name)s created; the role runs for %(term)s days unless renewed.", name=name, term=term))
    else:
        click.echo(f"Host {name} created, pending: this hub has an active host, so a second host must agree. "
                   + _countersign_hint(name, people.HOST))


@click.group("steward")
def steward_group() -> None:
    """Register patrol stewards and their handheld radios."""


@steward_group.command("add")
@click.argument("handle")
@click.argument("node_id")
@click.option("--decision", default="registered at the bench", show_default=True,
              help="The words of the assembly decision behind the steward role.")
@click.option("--decided-on", metavar="YYYY-MM-DD", help="The day of that decision (default: today).")
@click.option("--at", "place", default="the bench", show_default=True, help="The meeting or place of that decision.")
@click.option("--key", "radio_key", metavar="BASE64",
              help="The radio's public key from the steward's own app (Settings, Security, Public key): "
                   "pinned, so their direct messages to the hub count as theirs.")
@click.option("--show-handle", is_flag=True,
              help="The new steward, here in person, asked to show their handle on the bench page and the public "
                   "log (otherwise the public sees them only as a count). Later only they can show it.")
@with_schema
def steward_add(handle: str, node_id: str, decision: str, decided_on: str | None, place: str,
                radio_key: str | None, show_handle: bool) -> None:
    """Register HANDLE with the handheld NODE_ID (!a1b2c3d4 or a number); a steward role they lack is asked for."""
    ruling = _decision(decided_on or _now().date().isoformat(), place, decision)
    cap = _term_cap()
    member = _save(lambda s: radio_trust.register_radio(s, _now(), handle, node_id, ruling, min(_term_days(), cap),
                                                        cap, key=radio_key, show_handle=show_handle))
    click.echo(_("Steward %(handle)s registered with node %(node_id)s.", handle=member.handle, node_id=member.node_id))
    click.echo("The public sees their handle, as they asked." if member.show_handle
               else "The public sees them only as a count, without their handle.")
    if not people.has_role(db.session, people.get_member(db.session, handle), people.STEWARD, _now()):
        click.echo("Their steward role waits for a countersign. " + _countersign_hint(member.handle, people.STEWARD))
    if member.radio_key:
        click.echo(_("Radio key pinned: %(fingerprint)s (check it with the steward's app).",
                     fingerprint=radio_trust.fingerprint(member.radio_key)))
    else:
        click.echo(_("No radio key pinned yet: the first key the hub's radio hears for this node waits on the "
                     "stewards page for a host to confirm. Until then ACK, CLR and OFF from this radio are "
                     "refused."))


@steward_group.command("hide-handle")
@click.argument("handle")
@with_schema
def steward_hide_handle(handle: str) -> None:
    """At HANDLE's asking, hide their handle from the bench page and the public log (only they can show it again)."""
    member = _save(lambda s: people.set_show_handle(s, people.get_member(s, handle), False, by=None))
    # The web server caches public pages for CACHE_DEFAULT_TIMEOUT seconds in its own process.
    click.echo(_("%(handle)s's handle is hidden from the public (the bench page and the public log, within "
                 "%(seconds)s seconds).",
                 handle=member.handle, seconds=current_app.config['CACHE_DEFAULT_TIMEOUT']))


@steward_group.command("list")
@with_schema
def steward_list() -> None:
    """List members with a radio or a steward role."""
    now = _now()
    rows = []
    for member in people.list_members(db.session):
        roles = people.active_roles(db.session, member, now)
        if member.node_num is None and people.STEWARD not in roles:
            continue
        shift = patrol.current_shift(db.session, member)
        key = f"key {radio_trust.fingerprint(member.radio_key)}" if member.radio_key else "no key pinned"
        if member.radio_key_heard:
            key += f", key {radio_trust.fingerprint(member.radio_key_heard)} heard: a host must confirm"
        waiting = people.current_assignment(db.session, member, people.STEWARD, now)
        standing = f"({people.role_state(waiting, now)})" if waiting is not None else "(lapsed)"  # pending, suspended
        rows.append((member.handle, member.node_id or "-", ",".join(sorted(roles)) or standing,
                     "on shift" if shift else "", key if member.node_num is not None else ""))
    if not rows:
        click.echo(_("No stewards registered yet: safebench steward add HANDLE !NODEID"))
        return
    width = max(len(row[0]) for row in rows)
    for handle, node, roles, state, key in rows:
        click.echo(f"{handle:<{width}}  {node:<10}  {roles:<24}  {state:<8}  {key}".rstrip())


@click.group("role")
def role_group() -> None:
    """Roles and their renewals."""


@role_group.command("list")
@with_schema
def role_list() -> None:
    """Every role assignment with its expiry; pending ones wait for a countersign."""
    for summary in people.role_overview(db.session, _now()):
        a = summary.assignment
        renewal = " (a renewal waits for a countersign)" if a.pending_renewal and a.revoked_at is None else ""
        click.echo(f"{a.member.handle:<24} {a.role:<14} {summary.state:<9} "
                   + _("until %(expires_at)s UTC", expires_at=f"{a.expires_at:%Y-%m-%d %H:%M}") + renewal)


# At the terminal the hub is not a role-holder: a grant or renewal typed here is
# asked for by "the hub" and waits, like any, for a current host's countersign
# (a captain's, for a steward role), given on the roles page or with
# `role countersign --as`, which takes that role-holder's own password.


@role_group.command("grant")
@click.argument("handle")
@click.argument("role", type=click.Choice(people.ROLES))
@click.option("--decision", required=True, help="The words of the assembly decision that grants it.")
@click.option("--decided-on", metavar="YYYY-MM-DD", help="The day of that decision (required).")
@click.option("--at", "place", help="The meeting or place of that decision (required).")
@click.option("--days", type=int, help="Term in days (default: the hub's role term; at most ROLE_TERM_CAP_DAYS).")
@with_schema
def role_grant(handle: str, role: str, decision: str, decided_on: str | None, place: str | None,
               days: int | None) -> None:
    """Ask for ROLE for HANDLE on the assembly's decision: pending until a role-holder countersigns it."""
    ruling, cap = _decision(decided_on, place, decision), _term_cap()
    assignment = _save(lambda s: mandates.grant(s, _now(), people.get_member(s, handle), role, decision=ruling,
                                                term_days=days or min(_term_days(), cap), cap_days=cap, by=None))
    click.echo(f"{handle}'s {role} role until {assignment.expires_at:%Y-%m-%d %H:%M} UTC is asked for. "
               + _countersign_hint(handle, role))


@role_group.command("renew")
@click.argument("handle")
@click.argument("role", type=click.Choice(people.ROLES))
@click.option("--decision", required=True, help="The words of the assembly decision that renews it.")
@click.option("--decided-on", metavar="YYYY-MM-DD", help="The day of that decision (required).")
@click.option("--at", "place", help="The meeting or place of that decision (required).")
@click.option("--days", type=int, help="Term in days (default: the hub's role term; at most ROLE_TERM_CAP_DAYS).")
@with_schema
def role_renew(handle: str, role: str, decision: str, decided_on: str | None, place: str | None,
               days: int | None) -> None:
    """Ask to renew HANDLE's ROLE, even after it lapsed: the old term runs until a role-holder countersigns it."""
    ruling, cap = _decision(decided_on, place, decision), _term_cap()

    def work(session):  # noqa: ANN001, ANN202
        latest = _latest_assignment(session, handle, role)
        return mandates.renew(session, _now(), latest, decision=ruling, term_days=days or min(_term_days(), cap),
                              cap_days=cap, by=None)

    renewal = _save(work)
    click.echo(f"A renewal of {handle}'s {role} role until {renewal.new_expires_at:%Y-%m-%d %H:%M} UTC is asked for. "
               + _countersign_hint(handle, role))


def _latest_assignment(session, handle: str, role: str):  # noqa: ANN001, ANN202
    member = people.get_member(session, handle)
    latest = next((a for a in reversed(member.roles) if a.role == role and a.revoked_at is None), None)
    if latest is None:
        raise DomainError(_("%(handle)s has never held the %(role)s role; grant it instead.",
                            handle=handle, role=role))
    return latest


@role_group.command("countersign")
@click.argument("handle")
@click.argument("role", type=click.Choice(people.ROLES))
@click.option("--as", "signer", required=True, metavar="HANDLE",
              help="The current host (or captain, for a steward role) who countersigns; their password is read "
                   "from standard input.")
@with_schema
def role_countersign(handle: str, role: str, signer: str) -> None:
    """Countersign the pending grant or renewal of HANDLE's ROLE, as the role-holder SIGNER (never HANDLE themselves)."""
    password = sys.stdin.readline().rstrip("\r\n") if not sys.stdin.isatty() else click.prompt(
        f"{signer}'s password", hide_input=True)

    def work(session):  # noqa: ANN001, ANN202
        by = people.find_member(session, signer)
        if not people.check_password(by, password):
            raise DomainError(_("That handle and password do not match: only %(signer)s can countersign as "
                                "%(signer)s.",
                                signer=signer))
        return mandates.countersign(session, _now(), _latest_assignment(session, handle, role), by=by)

    assignment = _save(work)
    click.echo(_("Countersigned by %(signer)s: %(handle)s is %(role)s until %(expires_at)s UTC.",
                 signer=signer, handle=handle, role=role, expires_at=format(assignment.expires_at, '%Y-%m-%d %H:%M')))


# -- the log ------------------------------------------------------------------


FOLLOW_POLL_S = 0.5
FOLLOW_BATCH = 200


def _log_line(entry: patrol.LogEntry, as_json: bool) -> str:
    """One entry as ``safebench log`` prints it; urgent kinds and drills are marked."""
    row = {
        "id": entry.id,
        "time": entry.at.isoformat(timespec="seconds") + "Z",
        "kind": entry.kind,
        "steward": entry.member.handle if entry.member else None,
        "area": entry.area.name if entry.area else ("(sealed)" if entry.place else None),
        # Sealed: only a reader's login opens it, and the command line has none.
        "note": "(sealed)" if entry.note else None,
        "source": entry.source,
    }
    urgent = entry.kind in patrol.URGENT_KINDS
    if as_json:
        # Added only when true, so every line keeps the keys it always had.
        if urgent:
            row["urgent"] = True
        if entry.drill:
            row["drill"] = True
        return json.dumps(row, ensure_ascii=False)
    drill = "[DRILL] " if entry.drill else ""
    line = (f"{row['time']}  {drill}{entry.kind_label:<15} {row['steward'] or '-':<16} "
            f"{row['area'] or '-':<16} {row['note'] or ''}  [{entry.source}]").rstrip()
    return f"!! {line}" if urgent else line


@contextlib.contextmanager
def _until_interrupted():  # noqa: ANN202
    """An event set by Ctrl-C or SIGTERM, while the block runs.

    A flag instead of KeyboardInterrupt: raised at a random bytecode, the
    interrupt can land inside a garbage-collection callback (SQLAlchemy's weak
    identity map), where Python prints "Exception ignored", swallows it, and
    the host's Ctrl-C does nothing.
    """
    done = threading.Event()
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in stops}
    try:
        yield done
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _follow(last_id: int, as_json: bool, done: threading.Event) -> None:
    """Print entries as they are committed, by any process, until ``done``."""
    while not done.wait(FOLLOW_POLL_S):
        # A fresh session each time: one kept open would keep reading the
        # database as it was when it started.
        db.session.remove()
        for entry in patrol.entries_after(db.session, last_id, FOLLOW_BATCH):
            click.echo(_log_line(entry, as_json))
            last_id = entry.id


@click.command("log")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries as they are logged, until Ctrl-C.")
@with_schema
def log_command(as_json: bool, limit: int, follow: bool) -> None:
    """The patrol log, oldest of the last LIMIT entries first (for the host at the Pi).

    Urgent kinds (SOS, arrests, overdue check-ins, silent alerts) start with
    "!!", rehearsals say [DRILL].
    """
    with _until_interrupted() as done:
        entries = list(reversed(patrol.recent_entries(db.session, limit=limit)))
        for entry in entries:
            if done.is_set():
                return  # the host is done watching: not an error
            click.echo(_log_line(entry, as_json))
        if follow:
            _follow(entries[-1].id if entries else 0, as_json, done)


@click.command("board")
@click.option("--once", is_flag=True, help="Print the board once and exit (as in a pipe).")
@with_schema
def board_command(once: bool) -> None:
    """The host's board in the terminal: who is on shift, open alerts and arrest cases, the radio, the latest
    log entries. Redraws live until q or Ctrl-C; prints once when not on a terminal. No sealed word is shown.

    `safebench board` itself starts without Flask (server/entry.py); this is its --help, and the same board
    for `flask board`.
    """
    from server.board_terminal import show

    sys.exit(show(current_app.config, once=once))


# -- the record of power used --------------------------------------------------


def _record_line(use) -> str:  # noqa: ANN001  (a power_record.PowerUse)
    return (f"{use.at.isoformat(timespec='seconds')}Z  #{use.id:<5} {use.role:<14} {use.actor:<16} "
            f"{use.action_label}: {use.subject}  ({use.reason or 'no reason needed'})")


@click.command("record")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--verify", is_flag=True, help="Check the chain of hashes instead; exit 1 naming the broken rows.")
@with_schema
def record_command(limit: int, verify: bool) -> None:
    """The record of every power used, oldest of the last LIMIT entries first. It cannot be edited.

    With --verify, check that every row is as it was written and linked to
    the one before: exit 0 when the record is whole, 1 naming each broken row.
    """
    from server.domain import power_record

    if not verify:
        for use in reversed(power_record.entries(db.session, limit=limit)):
            click.echo(_record_line(use))
        return
    total, broken = power_record.count(db.session), power_record.broken_links(db.session)
    newest = next(iter(power_record.entries(db.session, limit=1)), None)
    if newest is not None:
        click.echo(_("Newest entry: %(id)s, fingerprint %(fingerprint)s (note it at the assembly).",
                     id=newest.id, fingerprint=newest.fingerprint))
    if not broken:
        click.echo(_("The record is whole: %(total)s entries, each linked to the one before.", total=total))
        return
    click.echo(_("The record is broken: %(n)s problem(s) in %(total)s entries.", n=len(broken), total=total))
    for link in broken:
        click.echo(_("  entry %(id)s: %(why)s", id=link.id, why=link.why))
    sys.exit(1)


@click.command("lock")
@with_schema
def lock_command() -> None:
    """Lock the hub now: every login ends and every sealed record closes, in every hub process, within a second.

    Readers open sealed records again by logging in. Also says which vaults
    (if any) still wait on the card for their first reader (server/domain/sealing.py).
    """
    from server.domain import power_record, sealing
    from server.web.keyring import lock_from_outside

    try:
        lock_from_outside(Path(current_app.config["INSTANCE"]))
    except OSError as error:
        raise click.ClickException(_("Could not lock the hub: the lock file could not be written (%(strerror)s). "
                                     "Stop the web server instead (on the Pi: sudo systemctl stop safebench-web).",
                                     strerror=error.strerror)) \
            from None
    click.echo(_("The hub is locked: every login has ended and every sealed record is closed."))
    try:
        _save(lambda session: power_record.record(session, _now(), actor=None, role=power_record.SYSTEM_ROLE,
                                                  action="hub-locked", subject="every login",
                                                  reason="safebench lock, at the Pi"))
    except click.ClickException:
        click.echo(_("The hub was too busy to write the lock into the record of power used; the lock itself holds."))
    holders = sealing.vault_holders(db.session)
    for vault in sealing.waiting_vaults(db.session):
        click.echo(_("Still waiting on the card in the clear: the %(vault)s vault's key, until a member who "
                     "reads %(label)s logs in once.",
                     vault=vault, label=sealing.VAULT_LABELS[vault]))
    for vault, count in holders.items():
        if count == 0:
            continue
        click.echo(_("%(label)s: sealed to %(count)s reader(s).",
                     label=sealing.VAULT_LABELS[vault].capitalize(), count=count))


# -- radio profiles, the patrol channel, the pocket card ----------------------

PROFILE_KINDS = ("hub", "steward", "relay")  # firmware_config.profiles.KINDS, without importing it for every command
QR_FILES = ("patrol-channel.png", "patrol-channel.svg")
POCKET_CARD_FILE = "pocket-card.html"


def _patrol_network():  # noqa: ANN202
    """The patrol network from the settings, its key and PIN generated on first use."""
    from firmware_config.network import NetworkError, load_network

    try:
        return load_network(current_app.config, Path(current_app.instance_path))
    except NetworkError as error:
        raise click.ClickException(error.message) from None


def _write_private(path: Path, data: str | bytes) -> None:
    """Write a file only its owner may read: everything written here carries the channel key."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_TRUNC
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)


@click.command("radio-profile")
@click.argument("kind", type=click.Choice(PROFILE_KINDS))
@click.option("--name", help="The radio's long name, e.g. the steward's handle (default: the bench's name and KIND).")
@click.option("--short", "short_name", help="The short name on other radios' screens, 1 to 4 letters "
              "(default: from --name).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the profile to this file (mode 600) instead of printing it.")
@with_appcontext
def radio_profile_command(kind: str, name: str | None, short_name: str | None, out: Path | None) -> None:
    """The YAML profile that `meshtastic --configure` applies to a radio: hub, steward or relay.

    It puts the radio on the patrol channel with the hub's region and preset,
    names it, and sets its role; a steward's handheld also gets the canned
    messages. The profile holds the channel key: keep it like a password.
    """
    from firmware_config.network import NetworkError
    from firmware_config.profiles import RELAY_WARNING, ROLES, build_profile, profile_yaml

    net = _patrol_network()
    try:
        profile = build_profile(kind, net, name=name, short_name=short_name)
    except NetworkError as error:
        raise click.ClickException(error.message) from None
    if kind == "relay":
        click.echo(_("WARNING: %(warning)s", warning=RELAY_WARNING), err=True)
    text = profile_yaml(kind, profile, out.name if out else None)
    if out is None:
        click.echo(text, nl=False)
    else:
        _write_private(out, text)
        click.echo(_("Wrote %(out)s: %(kind)s (%(role)s) for %(owner)s. Apply it with the radio on USB:\n  "
                     "meshtastic --port /dev/ttyUSB0 --configure %(out)s",
                     out=out, kind=kind, role=ROLES[kind], owner=profile['owner']))
    if kind != "hub":
        click.echo(_("Bluetooth PIN for pairing a phone with this radio: %(bluetooth_pin)s",
                     bluetooth_pin=net.bluetooth_pin), err=True)


@click.group("channel")
def channel_group() -> None:
    """The patrol channel: its share URL and QR code, and a new key when one is needed."""


@channel_group.command("show")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the QR codes (default: the instance folder).")
@with_appcontext
def channel_show(out_dir: Path | None) -> None:
    """Print the channel's share URL and write its QR code as PNG and SVG."""
    from firmware_config.channel import channel_url
    from firmware_config.qr import qr_png, qr_svg

    net = _patrol_network()
    url = channel_url(net)
    folder = out_dir or Path(current_app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = (folder / name for name in QR_FILES)
    _write_private(png, qr_png(url))
    _write_private(svg, qr_svg(url))
    if net.position_precision == 0:
        positions = "no positions"
    elif net.position_precision >= 32:
        positions = "exact positions"
    else:
        positions = f"positions cut to {net.position_precision} bits"
    uplink = "MQTT uplink ON" if net.mqtt_uplink else "MQTT off"
    click.echo(_("Patrol channel %(channel_name)s: %(region)s, %(preset)s, %(positions)s, %(uplink)s.",
                 channel_name=net.channel_name, region=net.region, preset=net.preset, positions=positions, uplink=uplink))
    click.echo(url)
    click.echo(_("QR code: %(png)s", png=png))
    click.echo(_("QR code: %(svg)s", svg=svg))
    click.echo(_("The URL and the QR codes hold the channel key: whoever has them hears the patrol."), err=True)


@channel_group.command("rotate")
@click.option("--yes", is_flag=True, help="Rotate without asking.")
@with_appcontext
def channel_rotate(yes: bool) -> None:
    """Give the patrol channel a new key, e.g. after a radio or a pocket card was lost."""
    from firmware_config.channel import channel_url
    from firmware_config.network import rotate_channel_key

    if not yes:
        click.confirm("A new key takes every radio off the patrol channel until it gets a fresh profile: the "
                      "hub's radio, every handheld, every relay. Old profiles, QR codes and pocket cards stop "
                      "working. Rotate the key?", abort=True)
    instance = Path(current_app.instance_path)
    _patrol_network()  # refuse before touching the key if the settings cannot make a profile
    rotate_channel_key(instance)
    for name in (*QR_FILES, POCKET_CARD_FILE):
        (instance / name).unlink(missing_ok=True)  # they show the old key
    click.echo(_("New channel key in %(path)s. The old one is gone: until each radio gets a fresh profile it "
                 "hears nothing from the patrol, and the patrol nothing from it.",
                 path=instance / 'channel.key'))
    click.echo(_("Now, in this order:\n  1. the hub's radio: stop the bridge, then\n       safebench "
                 "radio-profile hub --out hub.yaml\n       meshtastic --port /dev/ttyUSB0 --configure hub.yaml\n "
                 "    and start the bridge again;\n  2. every handheld and relay: safebench radio-profile "
                 "steward|relay --name NAME --out FILE, applied the same way;\n  3. new pocket cards (safebench "
                 "pocket-card) and QR codes (safebench channel show); destroy the old ones."))
    click.echo(_("New channel URL: %(channel_url)s", channel_url=channel_url(_patrol_network())))


@click.command("pocket-card")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Where to write the card (default: <instance>/{POCKET_CARD_FILE}).")
@with_schema
def pocket_card_command(out: Path | None) -> None:
    """Write the steward pocket card: the radio commands, the legal hotline, the allies and the channel's QR code."""
    from firmware_config.pocket_card import pocket_card_html
    from server.domain import allies

    net = _patrol_network()
    path = out or Path(current_app.instance_path) / POCKET_CARD_FILE
    _write_private(path, pocket_card_html(net, allies.card_vows(db.session, allies.POCKET_CARD_ALLIES)))
    click.echo(_("Wrote %(path)s: open it in a browser and print it on A6, at 100 %%.", path=path))
    if not net.legal_hotline:
        click.echo(_("No legal hotline on the card: set LEGAL_HOTLINE to print one."), err=True)
    click.echo(_("The card's QR code is the channel key: hand cards to stewards only."), err=True)


# -- printed material: the bench poster and the compact poster ----------------


def _text_setting(name: str) -> str:
    """A setting that is text, though ``SAFEBENCH_*`` values are read as JSON where they parse."""
    value = current_app.config[name]
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # all digits, e.g. a numeric WiFi password: the same text
    raise click.ClickException(_("%(name)s must be text, but %(value)s was read as JSON: put it in quotes "
                                 "(SAFEBENCH_%(name)s='\"...\"') or in settings.toml.",
                                 name=name, value=repr(value)))


def _bench_wifi():  # noqa: ANN202
    from server.printing.posters import BenchWifi

    wifi = BenchWifi(_text_setting("BENCH_WIFI_SSID"), _text_setting("BENCH_WIFI_PASSWORD"))
    if not wifi.ssid:
        raise click.ClickException(_("BENCH_WIFI_SSID is empty: the poster needs the bench WiFi's name."))
    if wifi.password and not 8 <= len(wifi.password) <= 63:
        # WPA's own limits: the hotspot would refuse it, and the QR code would join nothing.
        click.echo(_("Warning: a WPA password has 8 to 63 characters, BENCH_WIFI_PASSWORD has %(n)s: phones will "
                     "not join with it.",
                     n=len(wifi.password)), err=True)
    return wifi


def _bench_url() -> str:
    url = _text_setting("BENCH_URL").strip()
    if not url.startswith(("http://", "https://")):
        # A phone's camera opens only a full address; "10.42.0.1" alone is just text to it.
        raise click.ClickException(_("BENCH_URL %(url)s: a full address, e.g. http://10.42.0.1/", url=repr(url)))
    return url


def _local_date(moment):  # noqa: ANN001, ANN202
    from server.web.filters import to_local

    return to_local(moment).date()


def _print_poster(poster, out: Path | None) -> None:  # noqa: ANN001
    """Write a poster's HTML and QR codes, then its PDF and PNG if chromium is installed."""
    from server.printing.chromium import INSTALL_HINT, RenderError, find_chromium, render

    folder = out or Path(current_app.instance_path)
    page, pngs = poster.write(folder)
    click.echo(_("Wrote %(page)s: opens in any browser, prints on A4 at 100 %%.", page=page))
    for path, code in zip(pngs, poster.codes, strict=True):
        click.echo(_("Wrote %(path)s: QR code to %(label)s.", path=path, label=code.label))
    chromium = find_chromium()
    if chromium is None:
        click.echo(_("No chromium here: %(name)s.pdf and %(name)s.png need it (%(hint)s). %(name2)s "
                     "prints from any browser as it is.",
                     name=poster.name, hint=INSTALL_HINT, name2=page.name), err=True)
        return
    pdf, png = folder / f"{poster.name}.pdf", folder / f"{poster.name}.png"
    try:
        render(chromium, page, pdf, png)
    except RenderError as error:
        raise click.ClickException(_("%(name)s is written, but %(error)s", name=page.name, error=error)) from None
    click.echo(_("Wrote %(pdf)s: A4, ready to print.", pdf=pdf))
    click.echo(_("Wrote %(png)s: a picture of its first page.", png=png))


@click.command("poster")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write into (default: the instance folder).")
@with_schema
def poster_command(out: Path | None) -> None:
    """Write the bench poster: QR codes that join the bench WiFi and open the bench page, as HTML, PDF and PNG.

    The address and the WiFi's name and password are printed in plain text
    too, for phones whose camera reads neither code.
    """
    from server.domain import allies
    from server.printing.posters import bench_poster

    poster = bench_poster(
        bench_name=_text_setting("BENCH_NAME"),
        wifi=_bench_wifi(),
        bench_url=_bench_url(),
        legal_hotline=_text_setting("LEGAL_HOTLINE").strip(),
        printed_on=_local_date(_now()),
        allies=allies.card_vows(db.session),  # organisations only, a short list, shelters first
    )
    _print_poster(poster, out)


@click.command("compact-poster")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write into (default: the instance folder).")
@with_schema
def compact_poster_command(out: Path | None) -> None:
    """Write the Community Safety Compact as a poster, with a QR code to its page on the hub: HTML, PDF and PNG."""
    from server.domain import compact
    from server.printing.posters import compact_poster, page_url

    app = current_app._get_current_object()
    version = compact.current_version(db.session)
    poster = compact_poster(
        bench_name=_text_setting("BENCH_NAME"),
        text=compact.current_text(db.session),
        # The page's path as the app routes it, under the bench's own address.
        compact_url=page_url(_bench_url(), app.url_map.bind("localhost").build("compact.show")),
        wifi=_bench_wifi(),
        version_date=_local_date(version.edited_at) if version else None,
        version_number=compact.current_number(db.session),
        # The current text's own signatures: those of earlier texts stay with them.
        signatures=compact.signature_count(db.session),
        printed_on=_local_date(_now()),
    )
    _print_poster(poster, out)


@click.command("audit")
@click.option("--cycle", "number", type=click.IntRange(1), metavar="N",
              help="The lunar cycle's number, as the audit page shows it (default: the cycle running now).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write into (default: the instance folder).")
@with_schema
def audit_command(number: int | None, out: Path | None) -> None:
    """Write the public audit of a lunar cycle as HTML and PDF, for the assembly: the same as its page on the hub."""
    from flask import render_template

    from server.printing.chromium import INSTALL_HINT, RenderError, find_chromium, render
    from server.web.audit import build_report

    try:
        report = build_report(db.session, number)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    folder = out or Path(current_app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"audit-cycle-{report.cycle.number}"
    page = folder / f"{name}.html"
    page.write_text(render_template("printing/audit.html", report=report, bench_name=_text_setting("BENCH_NAME"),
                                    printed_at=_now()), encoding="utf-8")
    click.echo(_("Wrote %(page)s: opens in any browser, prints on A4.", page=page))
    chromium = find_chromium()
    if chromium is None:
        click.echo(_("No chromium here: %(name)s.pdf needs it (%(hint)s). %(name2)s prints from any "
                     "browser as it is.",
                     name=name, hint=INSTALL_HINT, name2=page.name), err=True)
        return
    pdf, picture = folder / f"{name}.pdf", folder / f"{name}.png"
    try:
        render(chromium, page, pdf, picture)
    except RenderError as error:
        raise click.ClickException(_("%(name)s is written, but %(error)s", name=page.name, error=error)) from None
    picture.unlink(missing_ok=True)  # chromium draws one with the PDF; the audit needs only the PDF
    click.echo(_("Wrote %(pdf)s: A4, ready to print.", pdf=pdf))

# -- backups ------------------------------------------------------------------


def _database_file() -> Path:
    from server.backup import BackupError, sqlite_path

    try:
        return sqlite_path(current_app.config["DATABASE_URL"])
    except BackupError as error:
        raise click.ClickException(str(error)) from None


def _backup_folder(folder: Path | None) -> Path:
    configured = current_app.config["BACKUP_DIR"]
    return folder or (Path(configured) if configured else Path(current_app.instance_path) / "backups")


@click.command("backup")
@click.option("--to", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Where to put the copy (default: the BACKUP_DIR setting, else <instance>/backups).")
@click.option("--keep", type=click.IntRange(1), help="How many copies to keep, newest first (default: BACKUP_KEEP, 7).")
@with_appcontext
def backup_command(folder: Path | None, keep: int | None) -> None:
    """Copy the database while the hub runs, and delete all but the newest copies.

    The copy is of the database as it is, never migrated first: a copy from before an upgrade is one to keep.
    """
    from server.backup import BackupError, back_up, back_up_postgresql, is_postgresql

    url, keep = current_app.config["DATABASE_URL"], keep or int(current_app.config["BACKUP_KEEP"])
    try:
        if is_postgresql(url):  # a city hub: pg_dump
            done = back_up_postgresql(url, _backup_folder(folder), keep, _now())
        else:
            done = back_up(_database_file(), _backup_folder(folder), keep, _now())
    except BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(_("Backed up to %(path)s", path=done.path))
    # What the copy holds is what the database holds: sealed words, and no key that opens them.
    click.echo(_("What people wrote about people is sealed in it: only a reader's password opens it, after "
                 "`safebench restore`, by logging in."))
    for old in done.removed:
        click.echo(_("Removed %(old)s", old=old))


@click.command("restore")
@click.argument("copy", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Restore without asking.")
@with_appcontext
def restore_command(copy: Path, yes: bool) -> None:
    """Put the backup COPY back as the hub's database; what it holds now is backed up first.

    Stop the hub first (on the Pi: sudo systemctl stop safebench.target), or
    the running processes go on with what they remember of the old data.

    Migrations run after the copy is back, never before: the database being replaced may not open.
    """
    from sqlalchemy.engine import make_url

    from server.backup import BackupError, is_postgresql, restore, restore_postgresql
    from server.migrating import apply_migrations

    url = current_app.config["DATABASE_URL"]
    on_postgresql = is_postgresql(url)
    database = make_url(url).render_as_string() if on_postgresql else _database_file()
    if not yes:
        click.confirm(f"Replace everything in {database} with {copy}?", abort=True)
    try:
        if on_postgresql:  # a city hub: psql, in one transaction
            safety = restore_postgresql(copy, url, _backup_folder(None), _now())
        else:
            safety = restore(copy, database, _backup_folder(None), _now())
    except BackupError as error:
        raise click.ClickException(str(error)) from None
    # A copy from before an upgrade gets the schema this version needs.
    apply_migrations(current_app._get_current_object())
    click.echo(_("Restored %(database)s from %(copy)s.", database=database, copy=copy))
    if safety is not None:
        click.echo(_("What it held before is in %(path)s: restore that to undo.", path=safety.path))
    else:
        click.echo(_("There was no readable database before, so nothing was kept of it."))



COMMANDS = (serve_command, worker_command, up_command, bridge_command, migrate_command, alert_command, run_jobs_command,
            create_host_command, lock_command,
            steward_group, role_group, log_command, board_command, record_command, sos_command, drill_group,
            radio_profile_command, channel_group, pocket_card_command,
            poster_command, compact_poster_command, audit_command, backup_command, restore_command)


def init_app(app: Flask) -> None:
    # Issue 16: the ledger on paper, in a module of its own built on the printing helpers above.
    from server.cli_ledger import COMMANDS as LEDGER_SHEET_COMMANDS
    # Issue 17: ``safebench federation`` (join, show, trust, revoke, areas).
    from server.cli_federation import COMMANDS as FEDERATION_COMMANDS

    for command in (*COMMANDS, *LEDGER_SHEET_COMMANDS, *FEDERATION_COMMANDS):
        app.cli.add_command(command)

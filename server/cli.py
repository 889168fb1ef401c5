"""The ``safebench`` command: a Flask CLI group over the app factory.

Every command uses the instance folder from ``SAFEBENCH_INSTANCE`` (default
``./instance``), so the hub, the worker and a host's terminal all see the
same database.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from server.db import HubBusy, run_in_transaction
from server.domain import patrol, people
from server.domain.errors import DomainError
from server.extensions import db


def _create_app() -> Flask:
    from server import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False, add_version_option=False)
def main() -> None:
    """Safe Bench: the hub behind the bench."""


def _now():  # noqa: ANN202
    return current_app.config["CLOCK"]()


def _save(work):  # noqa: ANN001, ANN202
    """Commit domain work from a command, turning refusals into plain messages."""
    try:
        return run_in_transaction(db.session, work, attempts=current_app.config["DB_RETRY_ATTEMPTS"])
    except DomainError as error:
        raise click.ClickException(error.message) from None
    except HubBusy as error:
        raise click.ClickException(f"{error} Try again in a moment.") from None


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # APScheduler narrates every job it adds and runs; the worker logs what the jobs did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _term_days() -> int:
    return int(current_app.config["ROLE_TERM_DAYS"])


# -- running the hub ----------------------------------------------------------


@click.command("serve")
@click.option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 on the bench WiFi).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@with_appcontext
def serve_command(host: str | None, port: int | None) -> None:
    """Run the web hub with waitress, after applying pending migrations."""
    from waitress import serve

    from server.migrating import apply_migrations

    _logging()
    app = current_app._get_current_object()
    apply_migrations(app)
    host = host or app.config["HOST"]
    port = port or int(app.config["PORT"])
    click.echo(f"Safe Bench hub on http://{host}:{port}/  (instance: {app.instance_path})")
    serve(app, host=host, port=port, threads=int(app.config["WEB_THREADS"]), ident="safebench")


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run the scheduler: role expiry, lapsing aid posts, purges. Run exactly one."""
    from server.migrating import apply_migrations
    from server.scheduler import run_forever

    _logging()
    app = current_app._get_current_object()
    apply_migrations(app)
    run_forever(app)


@click.command("up")
@click.option("--host", help="Address for the web hub (default 127.0.0.1).")
@click.option("--port", type=int, help="Port for the web hub (default 8080).")
@click.option("--radio", help="The radio for the bridge (default: the RADIO setting, else the simulated radio).")
@with_appcontext
def up_command(host: str | None, port: int | None, radio: str | None) -> None:
    """Run the whole hub on one machine: web server, scheduler and radio bridge, supervised."""
    from server.migrating import apply_migrations
    from server.supervisor import Child, supervise

    _logging()
    apply_migrations(current_app._get_current_object())
    serve_argv = ["serve"] + (["--host", host] if host else []) + (["--port", str(port)] if port else [])
    bridge_argv = ["bridge"] + (["--radio", radio] if radio else [])
    sys.exit(supervise([Child("web", serve_argv), Child("worker", ["worker"]), Child("bridge", bridge_argv)]))


@click.command("bridge")
@click.option("--radio", help="serial:/dev/ttyUSB0, serial:auto, tcp:HOST[:PORT] or sim (default: the "
              "instance's RADIO setting, else sim).")
@with_appcontext
def bridge_command(radio: str | None) -> None:
    """Run the radio bridge: check-ins in, alerts out. Run exactly one per radio."""
    import os

    from radio_bridge.mesh import RadioSpec
    from server.migrating import apply_migrations

    _logging()
    app = current_app._get_current_object()
    try:
        spec = RadioSpec.parse(radio or app.config["RADIO"] or "sim")
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    apply_migrations(app)
    # Become the lean bridge process (radio_bridge/main.py): same pid, so a
    # supervisor's signals reach it, but without Flask and Alembic in memory.
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "radio_bridge", "--instance", app.instance_path, "--radio", str(spec)]
    os.execv(sys.executable, argv)


@click.command("alert")
@click.argument("text")
@click.option("--urgent", is_flag=True, help="Urgent: goes before everything else, with the bell.")
@with_appcontext
def alert_command(text: str, urgent: bool) -> None:
    """Queue a broadcast to every handheld on the patrol channel."""
    from server.domain import outbox

    priority = outbox.URGENT if urgent else outbox.NORMAL
    messages = _save(lambda s: outbox.queue_message(s, _now(), text, priority=priority, bell=urgent))
    parts = f" in {len(messages)} parts" if len(messages) > 1 else ""
    click.echo(f"Queued{parts} as {outbox.PRIORITIES[priority]}; the bridge sends it in its next free slot.")


@click.command("run-jobs")
@with_appcontext
def run_jobs_command() -> None:
    """Run every scheduled job once, now (for cron, or to test a purge)."""
    from server.migrating import apply_migrations
    from server.scheduler import JOBS, run_all_once

    apply_migrations(current_app._get_current_object())
    for job, outcome in zip(JOBS, run_all_once(current_app._get_current_object()), strict=True):
        click.echo(f"{job.name}: {outcome or 'database busy, not run'}")


# -- rapid response -----------------------------------------------------------


@click.command("sos")
@click.argument("where", nargs=-1, required=True)
@click.option("--who", help="The handle of the steward in danger (default: nobody named, the hub raises it).")
@with_appcontext
def sos_command(where: tuple[str, ...], who: str | None) -> None:
    """Raise an SOS from the hub's terminal: an urgent broadcast with the bell to every handheld."""
    from server.domain import alerts

    def work(session):  # noqa: ANN001, ANN202
        member = people.get_member(session, who) if who else None
        return alerts.raise_sos(session, _now(), member, " ".join(where), patrol.SOURCE_CLI)

    alert = _save(work)
    where_said = f" at {alert.place}" if alert.place else ""
    click.echo(f"SOS {alert.code} raised for {alert.who}{where_said}: queued as urgent, with the bell. "
               f"Stewards answer ACK {alert.code}; follow it on /host/alerts.")


@click.group("drill")
def drill_group() -> None:
    """Rehearse the worst night: a mock SOS or a mock arrest, marked DRILL everywhere, timed for the assembly."""


def _start_drill(kind: str, where: str | None) -> None:
    from server.domain import alerts, cases, drills

    hotline = current_app.config["LEGAL_HOTLINE"]
    drill = _save(lambda s: drills.start(s, _now(), kind, None, where, hotline=hotline))
    if drill.alert_id is not None:
        what = f"alert {db.session.get(alerts.Alert, drill.alert_id).code}"
    else:
        what = f"case {db.session.get(cases.ArrestCase, drill.case_id).code}"
    click.echo(f"Drill {drill.id} started: {drills.KINDS[kind]}, {what}, marked DRILL on the air.")
    click.echo(f"End it with: safebench drill end {drill.id}; read it with: safebench drill report {drill.id}")


@drill_group.command("sos")
@click.option("--where", help="The pretend place (default: the bench).")
@with_appcontext
def drill_sos(where: str | None) -> None:
    """Start a mock SOS and print the drill's id."""
    _start_drill("sos", where)


@drill_group.command("arrest")
@click.option("--where", help="The pretend place (default: the bench).")
@with_appcontext
def drill_arrest(where: str | None) -> None:
    """Start a mock arrest case and print the drill's id."""
    _start_drill("arrest", where)


@drill_group.command("end")
@click.argument("drill_id", type=click.IntRange(1))
@with_appcontext
def drill_end(drill_id: int) -> None:
    """End drill DRILL_ID: its alert is resolved, its case closed, and its report kept."""
    from server.domain import drills

    drill = _save(lambda s: drills.end(s, _now(), drills.get_drill(s, drill_id), None))
    click.echo(drills.report_text(db.session, drill), nl=False)


@drill_group.command("report")
@click.argument("drill_id", type=click.IntRange(1))
@with_appcontext
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


@click.command("create-host")
@click.argument("name")
@click.option("--decision", default="first host, set up at the bench", show_default=True,
              help="The assembly decision that made them host.")
@with_appcontext
def create_host_command(name: str, decision: str) -> None:
    """Create a host account. The password is read from standard input when it is not a terminal."""
    from server.migrating import apply_migrations

    apply_migrations(current_app._get_current_object())
    password = _read_password()

    def work(session):  # noqa: ANN001, ANN202
        if people.find_member(session, name) is not None:
            raise DomainError(f"{name!r} exists already; use 'safebench role renew {name} host' to renew their role.")
        member = people.add_member(session, _now(), name)
        people.set_password(member, password)
        people.grant_role(session, _now(), member, people.HOST, decision=decision, term_days=_term_days())
        return member

    member = _save(work)
    click.echo(f"Host {member.handle} created; the role runs for {_term_days()} days unless renewed.")


@click.group("steward")
def steward_group() -> None:
    """Register patrol stewards and their handheld radios."""


@steward_group.command("add")
@click.argument("handle")
@click.argument("node_id")
@click.option("--decision", default="registered at the bench", show_default=True,
              help="The assembly decision behind the steward role.")
@with_appcontext
def steward_add(handle: str, node_id: str, decision: str) -> None:
    """Register HANDLE with the handheld NODE_ID (!a1b2c3d4 or a number)."""
    member = _save(lambda s: people.register_steward(s, _now(), handle, node_id, decision, _term_days()))
    click.echo(f"Steward {member.handle} registered with node {member.node_id}.")


@steward_group.command("list")
@with_appcontext
def steward_list() -> None:
    """List members with a radio or a steward role."""
    now = _now()
    rows = []
    for member in people.list_members(db.session):
        roles = people.active_roles(db.session, member, now)
        if member.node_num is None and people.STEWARD not in roles:
            continue
        shift = patrol.current_shift(db.session, member)
        rows.append((member.handle, member.node_id or "-", ",".join(sorted(roles)) or "(lapsed)",
                     "on shift" if shift else ""))
    if not rows:
        click.echo("No stewards registered yet: safebench steward add HANDLE !NODEID")
        return
    width = max(len(row[0]) for row in rows)
    for handle, node, roles, state in rows:
        click.echo(f"{handle:<{width}}  {node:<10}  {roles:<24}  {state}".rstrip())


@click.group("role")
def role_group() -> None:
    """Roles and their renewals."""


@role_group.command("list")
@with_appcontext
def role_list() -> None:
    """Every role assignment with its expiry."""
    for summary in people.role_overview(db.session, _now()):
        a = summary.assignment
        click.echo(f"{a.member.handle:<24} {a.role:<9} {summary.state:<9} until {a.expires_at:%Y-%m-%d %H:%M} UTC")


@role_group.command("grant")
@click.argument("handle")
@click.argument("role", type=click.Choice(people.ROLES))
@click.option("--decision", required=True, help="The assembly decision that grants it.")
@click.option("--days", type=int, help="Term in days (default: the hub's role term).")
@with_appcontext
def role_grant(handle: str, role: str, decision: str, days: int | None) -> None:
    """Grant ROLE to HANDLE for a term."""
    assignment = _save(lambda s: people.grant_role(
        s, _now(), people.get_member(s, handle), role, decision=decision, term_days=days or _term_days()))
    click.echo(f"{handle} is {role} until {assignment.expires_at:%Y-%m-%d %H:%M} UTC.")


@role_group.command("renew")
@click.argument("handle")
@click.argument("role", type=click.Choice(people.ROLES))
@click.option("--decision", required=True, help="The assembly decision that renews it.")
@click.option("--days", type=int, help="Term in days (default: the hub's role term).")
@with_appcontext
def role_renew(handle: str, role: str, decision: str, days: int | None) -> None:
    """Renew HANDLE's ROLE, even after it lapsed."""

    def work(session):  # noqa: ANN001, ANN202
        member = people.get_member(session, handle)
        latest = next((a for a in reversed(member.roles) if a.role == role and a.revoked_at is None), None)
        if latest is None:
            raise DomainError(f"{handle} has never held the {role} role; grant it instead.")
        return people.renew_role(session, _now(), latest, decision=decision, term_days=days or _term_days())

    renewal = _save(work)
    click.echo(f"{handle} is {role} until {renewal.new_expires_at:%Y-%m-%d %H:%M} UTC.")


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
        "area": entry.area.name if entry.area else entry.place,
        "note": entry.note,
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


def _follow(last_id: int, as_json: bool) -> None:
    """Print entries as they are committed, by any process, until Ctrl-C."""
    try:
        while True:
            # A fresh session each time: one kept open would keep reading the
            # database as it was when it started.
            db.session.remove()
            time.sleep(FOLLOW_POLL_S)
            for entry in patrol.entries_after(db.session, last_id, FOLLOW_BATCH):
                click.echo(_log_line(entry, as_json))
                last_id = entry.id
    except KeyboardInterrupt:
        pass  # the host is done watching: not an error


@click.command("log")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries as they are logged, until Ctrl-C.")
@with_appcontext
def log_command(as_json: bool, limit: int, follow: bool) -> None:
    """The patrol log, oldest of the last LIMIT entries first (for the host at the Pi).

    Urgent kinds (SOS, arrests, overdue check-ins, silent alerts) start with
    "!!", rehearsals say [DRILL].
    """
    try:
        entries = list(reversed(patrol.recent_entries(db.session, limit=limit)))
        for entry in entries:
            click.echo(_log_line(entry, as_json))
    except KeyboardInterrupt:
        return
    if follow:
        _follow(entries[-1].id if entries else 0, as_json)


COMMANDS = (serve_command, worker_command, up_command, bridge_command, alert_command, run_jobs_command,
            create_host_command,
            steward_group, role_group, log_command, sos_command, drill_group)


def init_app(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)

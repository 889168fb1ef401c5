"""``safebench federation``: join a federation, see who is in it, trust or revoke a bench, at the Pi's terminal.

Kept beside server/cli.py (which adds it to its commands). Whoever types
here holds the Pi, its key file and its database, so the terminal decides
alone (the record of power used says it was the terminal); on the web a
bench is trusted by two hosts (server/domain/federation.py says why).
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app

from server.cli import _now, _save, with_schema
from server.domain import federation
from server.extensions import db
from server.i18n import gettext as _


def _instance() -> Path:
    return Path(current_app.config["INSTANCE"])


@click.group("federation")
def federation_group() -> None:
    """Benches that hear each other: join a federation over an MQTT broker, trust or revoke its benches."""


@federation_group.command("join")
@click.argument("url")
@click.option("--name", "fed_name", required=True, help="The federation's name, the same on every bench.")
@click.option("--bench", required=True, help="This bench's name in the federation (letters, digits, . _ -; no spaces).")
@click.option("--username", help="This bench's user name on the broker.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file holding this bench's broker password (only its path is kept, never the password).")
@with_schema
def federation_join(url: str, fed_name: str, bench: str, username: str | None, password_file: Path | None) -> None:
    """Join the federation whose broker is URL (mqtts://host:8883); a signing key is made once, kept 0600."""
    joined = _save(lambda s: federation.join(s, _now(), _instance(), url=url, federation=fed_name, bench=bench,
                                             username=username,
                                             password_file=str(password_file) if password_file else None))
    click.echo(_("This bench is %(bench)s in the federation %(federation)s, through %(url)s.",
                 bench=joined.name, federation=joined.federation, url=joined.broker_url))
    click.echo(_("Its key's fingerprint, for a host of every other bench to hear read aloud: %(fingerprint)s",
                 fingerprint=joined.fingerprint))
    click.echo(_("The key is in %(path)s (only this user can read it). Whoever takes this SD card can sign as "
                 "this bench until the others revoke it.", path=federation.key_path(_instance())))
    # The bridge starts the federation link when it starts (a bench that never joins never loads it).
    click.echo(_("Restart the radio bridge for the link to start: sudo systemctl restart safebench-bridge "
                 "(or stop and start safebench up)."))


@federation_group.command("show")
@with_schema
def federation_show() -> None:
    """This bench's fingerprint, the federation's benches, and the messages dropped by reason."""
    session = db.session
    bench = federation.this_bench(session)
    if bench is None:
        click.echo(_("This bench has joined no federation. Join one with: safebench federation join URL "
                     "--name FEDERATION --bench NAME"))
        return
    click.echo(_("%(bench)s in %(federation)s, through %(url)s", bench=bench.name, federation=bench.federation,
                 url=bench.broker_url))
    click.echo(_("Fingerprint: %(fingerprint)s", fingerprint=bench.fingerprint))
    members = federation.members(session)
    if not members:
        click.echo(_("No other bench heard yet."))
    for member in members:
        last = f"{member.last_message_at:%Y-%m-%d %H:%M}Z {member.last_kind}" if member.last_message_at else "-"
        click.echo(f"  {member.name:<20} {member.state_label:<22} {member.fingerprint}  "
                   + _("last: %(last)s", last=last)
                   + ("  " + _("borders our %(areas)s", areas=", ".join(member.neighbour_area_list))
                      if member.neighbour_area_list else ""))
        if member.heard_key:
            click.echo("    " + _("another key heard for this name: %(fingerprint)s (trust it only once its "
                                  "host read you this fingerprint)", fingerprint=member.heard_fingerprint))
    drops = federation.drop_counts(session)
    if drops:
        click.echo(_("Dropped:"))
        for drop in drops:
            click.echo(f"  {drop.count:>6}  {federation.DROP_REASONS.get(drop.reason, drop.reason)}")
    waiting = len(federation.pending(session, _now()))
    click.echo(_("Messages waiting to be sent: %(n)d", n=waiting))


@federation_group.command("trust")
@click.argument("name")
@click.argument("fingerprint", nargs=-1, required=True)
@with_schema
def federation_trust(name: str, fingerprint: tuple[str, ...]) -> None:
    """Trust bench NAME once its host read you FINGERPRINT aloud (on a call or in person) and it matches."""
    said = " ".join(fingerprint)
    member = _save(lambda s: federation.confirm(s, _now(), federation.get_member(s, name), said, by=None))
    click.echo(_("%(name)s is trusted: its messages are acted on from now.", name=member.name))


@federation_group.command("revoke")
@click.argument("name")
@click.option("--reason", default="revoked at the Pi's terminal", show_default=True, help="Why, for the record.")
@with_schema
def federation_revoke(name: str, reason: str) -> None:
    """Stop acting on bench NAME's messages at once (its key was seized, or it went rogue)."""
    member = _save(lambda s: federation.revoke(s, _now(), federation.get_member(s, name), reason=reason, by=None))
    click.echo(_("%(name)s is revoked: nothing it signs is acted on any more.", name=member.name))


@federation_group.command("leave")
@click.option("--forget-key", is_flag=True, help="Delete this bench's signing key too: the next join makes a new one, "
              "which every other bench's hosts must confirm again.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@with_schema
def federation_leave(forget_key: bool, yes: bool) -> None:
    """Leave the federation: nothing more is sent or acted on (the other benches should revoke this one)."""
    if not yes:
        click.confirm(_("Leave the federation? Messages not yet sent are dropped."), abort=True)
    _save(lambda s: federation.leave(s, _now(), _instance(), forget_key=forget_key))
    click.echo(_("This bench has left its federation."))


@federation_group.command("areas")
@click.argument("name")
@click.argument("areas", nargs=-1)
@with_schema
def federation_areas(name: str, areas: tuple[str, ...]) -> None:
    """Say which of this bench's areas border bench NAME: an SOS or arrest there is sent to it (none: no AREAS)."""
    member = _save(lambda s: federation.set_neighbour_areas(s, _now(), federation.get_member(s, name), areas,
                                                            by=None))
    shown = ", ".join(member.neighbour_area_list) or _("none")
    click.echo(_("Our areas bordering %(name)s: %(areas)s", name=member.name, areas=shown))


COMMANDS = (federation_group,)

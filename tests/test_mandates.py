"""Stories of mandates the assembly controls: countersigned grants and renewals, capped terms, recall, the public page."""

from __future__ import annotations

import re
from datetime import timedelta

import click
import pytest

from server.cli import create_host_command, role_group, steward_group
from server.domain import mandates, people, power_record
from server.domain.people import CAPTAIN, DISPATCH, HOST, MEDIATOR, STEWARD, Decision
from server.extensions import db
from tests.helpers import PASSWORD, login, make_app, make_member, prefixed, submit, text_of

PLACE = "assembly at the library"
WAITS = "Your role waits for a second role-holder's countersign"  # what logging in says meanwhile


def decided(app, prefix: str = "") -> dict[str, str]:
    """The day (the story's clock) and the meeting of a decision, as the forms take them."""
    return {f"{prefix}decided_on": app.config["CLOCK"]().date().isoformat(), f"{prefix}decision_place": PLACE}


def browser(app, handle: str):
    client = app.test_client()
    assert login(client, handle).request.path != "/login"
    return client


def role_of(app, handle: str, role: str) -> int:
    with app.app_context():
        return max(a.id for a in people.get_member(db.session, handle).roles if a.role == role)


def power(app) -> set[tuple[str, str, object]]:
    """Every role that opens something now (as every permission check sees it): who, which, until when."""
    with app.app_context():
        now = app.config["CLOCK"]()
        held = {(m.handle, role) for m in people.list_members(db.session)
                for role in people.active_roles(db.session, m, now)}
        terms = {(a.member.handle, a.role, a.expires_at) for a in db.session.scalars(db.select(people.RoleAssignment))
                 if a.is_active(now)}
        return held | terms


def recorded(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(use.actor, use.action, use.subject) for use in reversed(power_record.entries(db.session))]


# -- a lone host ----------------------------------------------------------------


def every_role_changing_command() -> list[tuple[tuple[str, ...], click.Command]]:
    """The commands that grant, renew or countersign roles, found in the CLI itself: a new one is tried too."""
    found = [(("create-host",), create_host_command), (("steward", "add"), steward_group.commands["add"])]
    found += [(("role", name), command) for name, command in role_group.commands.items() if name != "list"]
    return found


def self_serving_arguments(command: click.Command, today: str) -> list[str]:
    """Everything a lone host would type to give themselves more: their own handle, the host role, the longest term."""
    words = {"handle": "Kestrel", "name": "Kestrel", "role": HOST, "node_id": "!0000beef"}
    options = {"decision": "I decided", "decided_on": today, "place": PLACE, "days": "42", "signer": "Kestrel"}
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument):
            args.append(words[param.name])
        elif param.name in options:
            args += [param.opts[0], options[param.name]]
    return args


def self_serving_form(url_ids: dict[str, int], today: str) -> dict[str, str]:
    """Every field any role form has, filled for the host themselves, under every prefix a form uses (the roles
    page's lone forms: grant-, member-, password-; its row forms: renew-<id>- and the like)."""
    fields = {"handle": "Kestrel", "holder": "Kestrel", "role": HOST, "term_days": "42", "decided_on": today,
              "decision_place": PLACE, "decision": "I decided", "new_password": PASSWORD, "outcome": "restore",
              "reason": "I want more", "appears_as_role": "1", "node_id": "!0000beef", "back": "stewards"}
    form = dict(fields)
    for prefix in ("grant", "member", "password"):
        form.update(prefixed(prefix, fields))
    for prefix in ("renew", "decide", "suspend", "member"):
        for some_id in url_ids.values():
            form.update({f"{prefix}-{some_id}-{name}": value for name, value in fields.items()})
    return form


def test_a_lone_host_cannot_extend_their_own_power_through_any_route_or_command(app, clock):
    make_member(app, "Kestrel", HOST, node="!a1b2c3d4")
    make_member(app, "Wren", STEWARD, password=None, node="!12345678")
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        ruling = Decision(clock().date(), PLACE, "the hub asked at the terminal")
        # What the terminal asked for on the host's behalf, waiting for someone: a captain's role, a longer host term.
        mandates.grant(db.session, clock(), kestrel, CAPTAIN, decision=ruling, term_days=28, cap_days=28, by=None)
        host_role = next(a for a in kestrel.roles if a.role == HOST)
        mandates.renew(db.session, clock(), host_role, decision=ruling, term_days=28, cap_days=28, by=None)
        db.session.commit()
    mine = {"host": role_of(app, "Kestrel", HOST), "captain": role_of(app, "Kestrel", CAPTAIN)}
    with app.app_context():
        my_member_id = people.get_member(db.session, "Kestrel").id
    before, today = power(app), clock().date().isoformat()
    client = browser(app, "Kestrel")

    # Every route that takes a post, from the URL map: a new one is tried without anyone listing it.
    tried = set()
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods or rule.endpoint == "static":
            continue
        id_choices = [mine["host"], mine["captain"]] if "assignment_id" in rule.arguments else [my_member_id]
        for some_id in id_choices:
            url = rule.rule
            for argument in rule.arguments:
                url = re.sub(rf"<(?:[^:>]+:)?{argument}>", str(some_id), url)
            response = submit(client, "/host/", self_serving_form(mine, today), action=url)
            assert response.status_code < 500, (url, response.status_code)
            assert power(app) == before, f"{url} gave the lone host more power"
            tried.add(rule.endpoint)
            client = browser(app, "Kestrel")  # logged out, or a password set: start afresh
    assert {"roles.grant", "roles.renew", "roles.countersign", "roles.decide", "roles.add_member",
            "roles.set_password", "host.register_steward", "mandates.ask_suspension",
            "mandates.confirm_suspension"} <= tried

    # The countersign route was reached, and refused with the hub's sentence.
    refused = submit(client, "/host/", {}, action=f"/host/roles/{mine['captain']}/countersign")
    assert "Nobody countersigns a role for themselves" in text_of(refused)

    # Every role-changing command at the terminal, found in the CLI.
    runner = app.test_cli_runner()
    commands = every_role_changing_command()
    assert {path for path, _ in commands} >= {("create-host",), ("role", "grant"), ("role", "renew"),
                                             ("role", "countersign")}
    for path, command in commands:
        result = runner.invoke(args=[*path, *self_serving_arguments(command, today)], input=PASSWORD + "\n")
        assert "Traceback" not in result.output, (path, result.output)
        assert power(app) == before, f"safebench {' '.join(path)} gave the lone host more power"
    own = runner.invoke(args=["role", "countersign", "Kestrel", "host", "--as", "Kestrel"], input=PASSWORD + "\n")
    assert own.exit_code != 0 and "Nobody countersigns a role for themselves" in own.output


# -- countersigned renewals ---------------------------------------------------------


def test_a_countersigned_renewal_takes_effect_and_a_pending_one_does_not(app, clock):
    make_member(app, "Kestrel", HOST, term_days=60)
    make_member(app, "Osprey", HOST, term_days=60)
    make_member(app, "Heron", MEDIATOR, term_days=3)
    kestrel, osprey, heron = browser(app, "Kestrel"), browser(app, "Osprey"), browser(app, "Heron")
    role = role_of(app, "Heron", MEDIATOR)
    # The logins outlive the old term here (idle lock and lifetime stretched), so the term's end and
    # the countersign alone are what close and open Heron's pages.
    ring = app.extensions["safebench.keyring"]
    ring.idle = ring.lifetime = timedelta(days=5)

    asked = submit(kestrel, "/host/roles", {f"renew-{role}-decision": "item 2: Heron mediates another cycle",
                                            f"renew-{role}-term_days": "28", **decided(app, f"renew-{role}-")},
                   action=f"/host/roles/{role}/renew")
    assert "It takes effect when another host countersigns it" in text_of(asked)
    assert "Pending: waits for a countersign" in text_of(kestrel.get("/host/roles"))

    clock.advance(days=3, minutes=1)  # the old term ran out; the renewal still waits
    assert heron.get("/host/mediation").status_code == 403
    own = submit(kestrel, "/host/roles", {}, action=f"/host/roles/{role}/countersign")
    assert "You asked for this renewal: a second role-holder must countersign it." in text_of(own)
    assert heron.get("/host/mediation").status_code == 403

    waiting = re.compile(r"Roles waiting for your countersign\s*:\s*(\d+)")
    assert waiting.search(text_of(osprey.get("/host/"))).group(1) == "1"
    assert waiting.search(text_of(kestrel.get("/host/"))).group(1) == "0"  # the one who asked
    signed = submit(osprey, "/host/roles", {}, action=f"/host/roles/{role}/countersign")
    assert "Countersigned: Heron is Mediator until" in text_of(signed)
    assert waiting.search(text_of(osprey.get("/host/"))).group(1) == "0"
    assert heron.get("/host/mediation").status_code == 200
    assert ("Osprey", "role-countersigned", "Heron: mediator") in recorded(app)
    assert ("Kestrel", "role-renewed", "Heron: mediator") in recorded(app)


def test_a_host_adds_a_mediator_without_a_radio_who_logs_in_once_a_second_host_countersigns(app):
    make_member(app, "Kestrel", HOST)
    make_member(app, "Osprey", HOST)
    kestrel, osprey = browser(app, "Kestrel"), browser(app, "Osprey")

    added = submit(kestrel, "/host/roles", prefixed("member", {
        "handle": "Linnet", "role": MEDIATOR, "new_password": "a long passphrase", "term_days": "28",
        "decision": "item 5: Linnet mediates", **decided(app)}), action="/host/roles/members")
    assert "Linnet can log in once another host countersigns" in text_of(added)
    linnet = app.test_client()
    assert WAITS in text_of(login(linnet, "Linnet", "a long passphrase"))

    submit(osprey, "/host/roles", {}, action=f"/host/roles/{role_of(app, 'Linnet', MEDIATOR)}/countersign")
    assert login(linnet, "Linnet", "a long passphrase").request.path != "/login"
    with app.app_context():
        assert people.get_member(db.session, "Linnet").node_num is None
    assert ("Kestrel", "password-reset", "Linnet") in recorded(app)
    # A steward role is not one to hold without a radio.
    refused = submit(kestrel, "/host/roles", prefixed("member", {
        "handle": "Finch", "role": STEWARD, "new_password": "a long passphrase", "term_days": "28", "decision": "x",
        **decided(app)}), action="/host/roles/members")
    assert refused.status_code == 400 and "Please choose a role from the list." in text_of(refused)
    # Nor does a host set the password of someone whose role is in force (and so log in as them).
    taken = submit(kestrel, "/host/roles", prefixed("password", {"holder": "Osprey", "new_password": "a long passphrase"}),
                   action="/host/roles/password")
    assert taken.status_code == 400 and "Osprey holds a role in force, so only they change" in text_of(taken)


# -- recall ---------------------------------------------------------------------


def test_two_role_holders_suspend_a_host_who_is_locked_out_the_same_minute(app):
    make_member(app, "Kestrel", HOST)
    make_member(app, "Osprey", HOST)
    make_member(app, "Heron", DISPATCH)
    kestrel, osprey, heron = browser(app, "Kestrel"), browser(app, "Osprey"), browser(app, "Heron")
    role = role_of(app, "Kestrel", HOST)

    asked = submit(heron, "/mandates", {f"suspend-{role}-reason": "kept the bail fund key for himself"},
                   action=f"/mandates/{role}/suspend")
    assert "You asked to suspend Kestrel's Hub host role" in text_of(asked)
    assert kestrel.get("/host/roles").status_code == 200  # one role-holder alone suspends nothing
    assert "You asked: a second role-holder confirms it." in text_of(heron.get("/mandates"))
    assert "Kestrel, do not" not in text_of(kestrel.get("/mandates"))
    themselves = submit(kestrel, "/mandates", {}, action=f"/mandates/{role}/confirm-suspension")
    assert "You cannot confirm the suspension of your own role." in text_of(themselves)
    again = submit(heron, "/mandates", {}, action=f"/mandates/{role}/confirm-suspension")
    assert "You asked for this suspension: a second role-holder must confirm it." in text_of(again)
    # The public does not see an ask, only a suspension in force.
    assert "bail fund" not in text_of(app.test_client().get("/mandates"))

    confirmed = submit(osprey, "/mandates", {}, action=f"/mandates/{role}/confirm-suspension")
    assert "is suspended from now until the assembly" in text_of(confirmed)
    assert kestrel.get("/host/roles").status_code == 403  # the same minute: no clock moved
    assert "Your role is suspended until the assembly decides" in text_of(login(app.test_client(), "Kestrel"))
    assert "Suspended until the assembly decides" in text_of(app.test_client().get("/mandates"))

    # The assembly restores it; a host records the decision (never the suspended host).
    restored = submit(osprey, "/host/roles", {f"decide-{role}-outcome": "restore",
                                              f"decide-{role}-decision": "item 1: Kestrel keeps the role",
                                              **decided(app, f"decide-{role}-")}, action=f"/host/roles/{role}/decide")
    assert "role is restored, as the assembly decided" in text_of(restored)
    assert kestrel.get("/host/roles").status_code == 200
    actions = [action for _, action, subject in recorded(app) if subject == "Kestrel: host"]
    assert actions == ["role-granted", "suspension-asked", "role-suspended", "role-restored"] or actions[-3:] == [
        "suspension-asked", "role-suspended", "role-restored"]

    # Ended by the next assembly after a second recall: the role is gone, and stays in the history.
    submit(heron, "/mandates", {f"suspend-{role}-reason": "again"}, action=f"/mandates/{role}/suspend")
    submit(osprey, "/mandates", {}, action=f"/mandates/{role}/confirm-suspension")
    with app.app_context():
        osprey_member = people.get_member(db.session, "Osprey")
        kestrel_member = people.get_member(db.session, "Kestrel")
        with pytest.raises(Exception, match="another host"):
            mandates.decide(db.session, app.config["CLOCK"](), people.get_assignment(db.session, role),
                            outcome="end", decision=Decision(app.config["CLOCK"]().date(), PLACE, "x"),
                            by=kestrel_member)
        db.session.rollback()
        assert osprey_member.id != kestrel_member.id
    ended = submit(osprey, "/host/roles", {f"decide-{role}-outcome": "end",
                                           f"decide-{role}-decision": "item 3: Kestrel steps down",
                                           **decided(app, f"decide-{role}-")}, action=f"/host/roles/{role}/decide")
    assert "Kestrel · Hub host · Ended" in text_of(ended)
    assert ("Osprey", "role-ended", "Kestrel: host") in recorded(app)


# -- the Pi's terminal ----------------------------------------------------------------


def test_create_host_makes_a_host_only_while_the_hub_has_none_and_a_pending_one_otherwise(app, runner):
    first = runner.invoke(args=["create-host", "Kestrel"], input=PASSWORD + "\n")
    assert first.exit_code == 0, first.output
    assert "Host Kestrel created; the role runs for 28 days" in first.output

    second = runner.invoke(args=["create-host", "Osprey"], input=PASSWORD + "\n")
    assert second.exit_code == 0, second.output
    assert "Host Osprey created, pending: this hub has an active host" in second.output
    osprey = app.test_client()
    assert WAITS in text_of(login(osprey, "Osprey"))
    assert ("the hub", "host-created", "Osprey") in recorded(app)

    # The terminal is not a role-holder: its grants wait like anyone's.
    granted = runner.invoke(args=["role", "grant", "Osprey", MEDIATOR, "--decision", "item 4",
                                  "--decided-on", app.config["CLOCK"]().date().isoformat(), "--at", PLACE])
    assert granted.exit_code == 0 and "It opens nothing until a host countersigns it" in granted.output
    signed = runner.invoke(args=["role", "countersign", "Osprey", HOST, "--as", "Kestrel"], input=PASSWORD + "\n")
    assert signed.exit_code == 0, signed.output
    assert login(osprey, "Osprey").request.path != "/login"
    assert ("Kestrel", "role-countersigned", "Osprey: host") in recorded(app)


# -- caps -------------------------------------------------------------------------


def test_terms_are_capped_at_28_days_by_default_and_never_above_six_weeks(app, clock, tmp_path):
    make_member(app, "Kestrel", HOST)
    make_member(app, "Heron", password=None)
    kestrel = browser(app, "Kestrel")
    grant = prefixed("grant", {"handle": "Heron", "role": MEDIATOR, "decision": "item 2", **decided(app)})

    for typed in ("29", "366"):
        refused = submit(kestrel, "/host/roles", {**grant, "grant-term_days": typed})
        assert refused.status_code == 400 and "A term runs from 1 to 28 days" in text_of(refused)
    assert submit(kestrel, "/host/roles", {**grant, "grant-term_days": "28"}).status_code == 200

    longer = make_app(tmp_path / "six-weeks", clock, ROLE_TERM_CAP_DAYS=42, RATELIMIT_ENABLED=False)
    make_member(longer, "Kestrel", HOST)
    make_member(longer, "Heron", password=None)
    client = browser(longer, "Kestrel")
    assert "A term runs from 1 to 42 days" in text_of(submit(client, "/host/roles", {**grant, "grant-term_days": "43"}))
    assert "opens nothing until another host" in text_of(submit(client, "/host/roles", {**grant, "grant-term_days": "42"}))

    too_long = make_app(tmp_path / "too-long", clock, ROLE_TERM_CAP_DAYS=60, RATELIMIT_ENABLED=False)
    make_member(too_long, "Kestrel", HOST)
    make_member(too_long, "Heron", password=None)
    client = browser(too_long, "Kestrel")
    assert "ROLE_TERM_CAP_DAYS setting is 60" in text_of(client.get("/host/roles"))
    refused = submit(client, "/host/roles", {**grant, "grant-term_days": "7"})
    assert refused.status_code == 400 and "ROLE_TERM_CAP_DAYS setting is 60" in text_of(refused)
    at_the_pi = too_long.test_cli_runner().invoke(args=["role", "grant", "Heron", MEDIATOR, "--decision", "x",
                                                        "--decided-on", clock().date().isoformat(), "--at", PLACE])
    assert at_the_pi.exit_code != 0 and "ROLE_TERM_CAP_DAYS setting is 60" in at_the_pi.output
    with too_long.app_context():
        db.session.remove()
        db.engine.dispose()
    with longer.app_context():
        db.session.remove()
        db.engine.dispose()


# -- the public mandates page -----------------------------------------------------------


def test_the_mandates_page_shows_each_role_and_its_decision_to_anyone_without_node_ids(app):
    make_member(app, "Kestrel", HOST, node="!a1b2c3d4")
    make_member(app, "Osprey", HOST)
    make_member(app, "Wren", STEWARD, node="!12345678")
    make_member(app, "Heron", password=None)
    kestrel = browser(app, "Kestrel")
    submit(kestrel, "/host/roles", prefixed("grant", {"handle": "Heron", "role": DISPATCH, "term_days": "14",
                                                      "decision": "item 6: Heron joins dispatch", **decided(app)}))
    wren = browser(app, "Wren")
    chose = submit(wren, "/mandates", {"appears_as_role": "1"}, action="/mandates/me")
    assert "now shows your role instead of your handle" in text_of(chose)

    anonymous = app.test_client()
    assert "the mandates" in text_of(anonymous.get("/"))
    response = anonymous.get("/mandates")
    assert response.status_code == 200
    page = text_of(response)
    html = response.get_data(as_text=True)
    assert "Hub host Kestrel In force" in page and "Hub host Osprey In force" in page
    assert "Patrol steward a steward In force" in page and "Wren" not in page
    assert "Dispatch Heron Pending: waits for a countersign" in page
    assert PLACE in page
    assert "a1b2c3d4" not in html.lower() and "12345678" not in html
    assert "Ask to suspend" not in page and "How you appear here" not in page  # role-holders' parts only
    assert "<form" not in html.split('id="main"')[1]  # nothing to post for a passer-by
    with open(app.root_path + "/static/bench.css") as css:
        assert "@media print{.no-print{display:none}" in css.read()  # one sheet: the forms stay off paper

    back = submit(wren, "/mandates", {"appears_as_role": "0"}, action="/mandates/me")
    assert "now shows your handle" in text_of(back)
    assert "Patrol steward Wren In force" in text_of(anonymous.get("/mandates"))


def test_roles_from_before_mandates_stay_in_force_after_the_upgrade(tmp_path, clock):
    """A bench upgrading in the field: roles granted before countersigns existed count as countersigned."""
    from flask_migrate import upgrade

    from server import create_app
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": tmp_path / "old-hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade(revision="09617f50aeec")  # the schema just before mandates
        db.session.execute(db.text(
            "INSERT INTO member (id, handle, handle_key, created_at, session_epoch) "
            "VALUES (1, 'Kestrel', 'kestrel', '2026-11-01 20:00:00', 0)"))
        db.session.execute(db.text(
            "INSERT INTO role_assignment (id, member_id, role, granted_at, expires_at, decision) "
            "VALUES (1, 1, 'host', '2026-11-20 20:00:00', '2026-12-18 20:00:00', 'assembly of 20 Nov')"))
        db.session.commit()
    apply_migrations(app)
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        assert people.active_roles(db.session, kestrel, clock()) == {HOST}
        (assignment,) = kestrel.roles
        assert assignment.countersigned_at == assignment.granted_at and not kestrel.appears_as_role
        assert mandates.public_mandates(db.session, clock())[0].decided_on is None
        db.session.remove()
        db.engine.dispose()

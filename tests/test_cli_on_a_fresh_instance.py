"""A host on a new Pi types every ``safebench`` command before ``safebench up`` ever ran.

The commands are found in the click group itself, subcommands of groups
included, so a command added later is typed here too without anyone listing
it. Each runs as a real process on an instance folder of its own, still
empty, and ends well (exit 0) or says what is wrong in one line; never a
traceback, never "no such table". A command that touched the database
leaves it at the newest schema.

Four commands run until they are stopped: ``serve``, ``up``, ``worker`` and
``bridge`` are asked for ``--help`` here (each is started and stopped on a new
instance in test_running_the_hub.py and test_live_log.py); ``log --follow`` is
started here and stopped with Ctrl-C. Alembic's tools for developers,
``db ...``, are asked for ``--help`` only: they write migration files into
this repository, open an editor, or move the schema by hand.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import click
from flask.cli import ScriptInfo

from server import backup, create_app
from server.cli import main
from server.clock import utcnow
from server.migrating import SCHEMA_HEAD
from tests.helpers import PASSWORD, make_app, make_member
from tests.processes import SAFEBENCH, env_for, safebench

# What a host would type; a command not named here gets its required arguments made up from its parameters.
TYPED: dict[tuple[str, ...], list[str]] = {
    ("alert",): ["Stay clear of Market St tonight"],
    ("sos",): ["behind", "the", "station"],
    ("create-host",): ["Kestrel"],
    ("steward", "add"): ["Kestrel", "!a1b2c3d4"],
    ("role", "grant"): ["Kestrel", "host", "--decision", "assembly of 3 November, item 2"],
    ("role", "renew"): ["Kestrel", "host", "--decision", "assembly of 1 December, item 1"],
    ("drill", "end"): ["1"],
    ("drill", "report"): ["1"],
    ("radio-profile",): ["steward", "--name", "Kestrel"],
    ("channel", "show"): ["--out-dir", "{out}"],
    ("channel", "rotate"): ["--yes"],
    ("pocket-card",): ["--out", "{out}/pocket-card.html"],
    ("poster",): ["--out", "{out}"],
    ("compact-poster",): ["--out", "{out}"],
    ("backup",): ["--to", "{out}"],
    ("restore",): ["{copy}", "--yes"],
}
TYPED_IN = {("create-host",): PASSWORD + "\n"}
RUN_UNTIL_STOPPED = {("serve",), ("up",), ("worker",), ("bridge",)}
DEVELOPERS_ONLY = ("db",)

# Lines the migrations log on their way (Alembic's "INFO  [alembic.runtime.migration] ..."), not the command's say.
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNI|ERROR)\s*\[")
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception)\b")


def every_command(listing: Path) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command ``safebench`` offers, as the words that name it, groups' subcommands in place of the group."""
    info = ScriptInfo(create_app=lambda: create_app({"INSTANCE": listing}))
    with click.Context(main, info_name="safebench", obj=info) as ctx:

        def walk(group: click.Group, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
            for name in group.list_commands(ctx):
                command = group.get_command(ctx, name)
                if isinstance(command, click.Group):
                    yield from walk(command, (*path, name))
                else:
                    yield (*path, name), command

        yield from walk(main, ())


def example(param: click.Parameter, folder: Path) -> str:
    """A value of the parameter's type, for a command no one told this test about."""
    kind = param.type
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, click.IntRange | click.FloatRange):
        return str(kind.min if kind.min is not None else 1)
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return "1"
    if isinstance(kind, click.Path):
        if not kind.file_okay:
            return str(folder)
        some_file = folder / "some-file"
        some_file.write_text("something")
        return str(some_file)
    return "Kestrel"


def made_up_arguments(command: click.Command, folder: Path) -> list[str]:
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option) and param.is_flag and param.name == "yes":
            args.append(param.opts[0])  # it would ask first
        elif param.required and isinstance(param, click.Option):
            args += [param.opts[0], example(param, folder)]
        elif param.required:
            args.append(example(param, folder))
    return args


def last_nights_copy(folder: Path) -> Path:
    """A backup from another hub, as a host brings it to a new SD card."""
    app = make_app(folder / "old-pi", utcnow)
    make_member(app, "Osprey", "host")
    return backup.back_up(folder / "old-pi" / "safebench.db", folder / "copies", None, utcnow()).path


def schema_of(instance: Path) -> list[str] | None:
    """The database's migration revisions, or None if the command left no database."""
    database = instance / "safebench.db"
    if not database.exists():
        return None
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
        except sqlite3.OperationalError:
            return []  # a database file without the schema


def what_went_wrong(done: subprocess.CompletedProcess) -> str | None:
    """None when the command ended well or said what was wrong in one line."""
    printed = done.stdout + done.stderr
    if "Traceback" in printed:
        raised = [line for line in printed.splitlines() if EXCEPTION_LINE.match(line)] or ["?"]
        return f"a traceback: {raised[-1]}"
    if done.returncode == 0:
        return None
    said = [line for line in done.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    if len(said) == 1 and (said[0].startswith("Error: ") or said[0] == "Aborted!"):
        return None
    return f"exit {done.returncode}, saying {said}"


def test_every_command_works_or_says_why_on_a_new_instance_before_the_hub_ever_ran(tmp_path):
    commands = dict(every_command(tmp_path / "listing"))
    assert {("steward", "add"), ("role", "list"), ("drill", "sos"), ("channel", "rotate"), ("log",)} <= set(commands)
    assert set(TYPED) | RUN_UNTIL_STOPPED <= set(commands), "a command named here is gone: update TYPED"
    copy = last_nights_copy(tmp_path)

    problems: dict[str, str] = {}
    ran: dict[tuple[str, ...], subprocess.CompletedProcess] = {}
    for number, (path, command) in enumerate(sorted(commands.items())):
        instance = tmp_path / f"new-pi-{number}" / "instance"
        out = instance.parent / "out"
        out.mkdir(parents=True)
        if path in RUN_UNTIL_STOPPED or path[0] in DEVELOPERS_ONLY:
            args = ["--help"]
        elif path in TYPED:
            args = [arg.format(out=out, copy=copy) for arg in TYPED[path]]
        else:
            args = made_up_arguments(command, out)
        done = ran[path] = safebench(instance, *path, *args, stdin=TYPED_IN.get(path, ""), timeout=180)
        typed = " ".join(["safebench", *path, *args])
        if problem := what_went_wrong(done):
            problems[typed] = problem
        elif schema_of(instance) not in (None, [SCHEMA_HEAD]):
            problems[typed] = f"left the database at {schema_of(instance)}, not at {SCHEMA_HEAD}"
    assert not problems, "\n".join(f"{typed}: {problem}" for typed, problem in problems.items())

    # The first command ever typed does what it says, on the newest schema.
    assert "Steward Kestrel registered with node !a1b2c3d4." in ran[("steward", "add")].stdout
    assert "Host Kestrel created" in ran[("create-host",)].stdout
    assert "No stewards registered yet" in ran[("steward", "list")].stdout
    assert "Queued as normal" in ran[("alert",)].stdout
    assert "started" in ran[("drill", "sos")].stdout
    # A new SD card gets last night's copy; a backup of nothing is refused in a line.
    assert "There was no readable database before" in ran[("restore",)].stdout
    assert "There is no database at" in ran[("backup",)].stderr
    for path in RUN_UNTIL_STOPPED:
        assert ran[path].stdout.startswith("Usage: safebench"), path


def test_log_follow_on_a_new_instance_waits_for_entries_until_ctrl_c(tmp_path):
    instance = tmp_path / "instance"
    follow = subprocess.Popen([SAFEBENCH, "log", "--follow"], env=env_for(instance), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while schema_of(instance) != [SCHEMA_HEAD] and follow.poll() is None:
            assert time.monotonic() < deadline, "the log never got its tables"
            time.sleep(0.2)
        time.sleep(1)  # following an empty log
    finally:
        follow.send_signal(signal.SIGINT)
        printed, errors = follow.communicate(timeout=15)
    assert follow.returncode == 0, errors
    assert "Traceback" not in printed + errors and printed == ""

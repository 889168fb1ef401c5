"""``safebench board``: the host's board in a terminal, for a Pi with a screen and no browser.

It reads server/domain/board.py straight from the hub's database, as the
scheduler does (no Flask, no web server: a second or so less to start on a
Pi Zero), and redraws the whole screen with curses when something new is
logged, and every ``REDRAW_S`` besides (the clocks move). ``q`` or Ctrl-C
ends it. When its output is not a terminal (a pipe, a test, ``--once``) it
prints the board once as plain text and exits.

No one logs in at a terminal, so no sealed word is ever opened here: it
shows kinds, areas, codes, counts and times. A screen at the bench may be
seen by anyone in the room, so it shows what a captain sees, no more:
silent (duress) alerts and the arrest cases' own log entries stay off it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.i18n import gettext as _

POLL_S = 1.0  # how often the newest log id is looked at: one cheap query
REDRAW_S = 15.0  # a full read at least this often, so the clocks move on a quiet night


def _zone(settings: Mapping[str, Any]) -> ZoneInfo | None:
    name = str(settings.get("TIMEZONE") or "")
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None  # the Pi's own zone, as the web pages fall back to


def _hhmm(moment: datetime | None, zone: ZoneInfo | None) -> str:
    if moment is None:
        return "--:--"
    return moment.replace(tzinfo=UTC).astimezone(zone).strftime("%H:%M")


def lines(board: Any, zone: ZoneInfo | None) -> list[tuple[str, bool]]:
    """The board as text lines, each with whether it is urgent (drawn bold and in red on a screen)."""
    out: list[tuple[str, bool]] = []

    def add(text: str, urgent: bool = False) -> None:
        out.append((text, urgent))

    add(_("SAFE BENCH BOARD · %(time)s · q to quit", time=_hhmm(board.at, zone)))
    add("")
    add(_("OPEN ALERTS (%(n)s)", n=len(board.alerts)), bool(board.alerts))
    if not board.alerts:
        add("  " + _("No open alerts."))
    for a in board.alerts:
        marks = " ".join(m for m in (
            _("[DRILL]") if a.drill else "",
            _("[unverified sender]") if not a.verified else "",
        ) if m)
        responding = (_("responding: %(who)s", who=", ".join(a.responders)) if a.responders
                      else _("nobody responding yet"))
        add(f"  !! {a.code} {a.label} · {a.who}" + (f" · {a.place}" if a.place else "")
            + f" · {_('%(n)s min ago', n=a.age_minutes)} · {responding}" + (f" {marks}" if marks else ""), True)
    add("")
    add(_("ON SHIFT (%(n)s)", n=len(board.on_shift)))
    if not board.on_shift:
        add("  " + _("Nobody is on shift."))
    for s in board.on_shift:
        if s.state == "overdue":
            clock = _("OVERDUE: alert out")
        elif s.state == "pinged":
            clock = _("pinged: alert in %(n)s min", n=s.alert_in_minutes)
        elif s.state == "late":
            clock = _("%(late)s min late: alert in %(n)s min", late=-s.due_in_minutes, n=s.alert_in_minutes)
        else:
            clock = _("due in %(n)s min", n=s.due_in_minutes)
        flag = " " + _("[unverified radio]") if s.unverified else ""
        add(f"  {s.handle:<16} {s.area or '-':<16} {_('last heard %(n)s min ago', n=s.quiet_minutes)} · {clock}{flag}",
            s.state in ("overdue", "pinged"))
    add("")
    add(_("OPEN ARREST CASES (%(n)s)", n=len(board.cases)))
    if not board.cases:
        add("  " + _("No open arrest cases."))
    for c in board.cases:
        held = _("%(taken)s taken · %(out)s out · %(held)s held", taken=c.arrested, out=c.released, held=c.outstanding)
        clock = (_("%(h)s h: %(left)s h to the 48-hour mark", h=c.hours_held, left=c.hours_to_48) if c.hours_to_48 > 0
                 else _("%(h)s h: PAST THE 48-HOUR MARK", h=c.hours_held))
        drill = " " + _("[DRILL]") if c.drill else ""
        confirmed = "" if c.confirmed else " " + _("[not confirmed yet]")
        add(f"  {c.code} {c.place} · {held} · {clock}{drill}{confirmed}", c.mark == "urgent")
    add("")
    overdue_tasks = getattr(board, "tasks", [])
    add(_("OVERDUE TASKS (%(n)s)", n=len(overdue_tasks)))
    if not overdue_tasks:
        add("  " + _("No task is past its time frame."))
    for t in overdue_tasks:
        taker = _("taken by %(who)s", who=t.taken_by) if t.taken_by else _("nobody has taken it")
        add(f"  {t.code} {t.title} · {t.area or '-'} · {_('%(n)s h past its time frame', n=t.hours_over)} · {taker}")
    add("")
    r = board.radio
    if not r.ever_ran:
        state = _("no radio bridge has run on this hub yet")
    elif r.silent:
        state = _("bridge SILENT since %(time)s", time=_hhmm(r.heartbeat_at, zone))
    elif not r.connected:
        state = _("DISCONNECTED since %(time)s", time=_hhmm(r.since, zone))
    else:
        state = _("connected since %(time)s", time=_hhmm(r.since, zone))
    if r.simulated:
        state += " " + _("[SIMULATED]")
    add(_("RADIO: %(state)s", state=state), not r.healthy)
    add("  " + _("airtime %(used)s s of %(budget)s s in the last hour (%(pct)s%%) · %(n)s waiting to go out (%(urgent)s urgent)",
                 used=round(r.airtime_used_s), budget=round(r.airtime_budget_s), pct=r.airtime_percent,
                 n=r.queued, urgent=r.queue.get("urgent", 0))
        + (" · " + _("%(n)s unknown radios heard", n=r.strangers) if r.strangers else ""))
    add("")
    add(_("LATEST LOG ENTRIES"))
    if not board.entries:
        add("  " + _("Nothing logged yet."))
    for e in board.entries:
        drill = _("[DRILL]") + " " if e.drill else ""
        mark = "!! " if e.urgent else "   "
        add(f"{mark}{_hhmm(e.at, zone)} {drill}{e.label:<16} {e.steward or '-':<16} {e.area or ''}".rstrip(), e.urgent)
    return out


class Reader:
    """Sessions on the hub's database, without Flask: one fresh session per read, so each sees what is new."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from sqlalchemy.orm import sessionmaker

        from server.db import make_engine
        from server.domain import board, patrol

        self.settings = settings
        self.engine = make_engine(settings["DATABASE_URL"], int(settings["DB_BUSY_TIMEOUT_MS"]))
        self.sessions = sessionmaker(self.engine)
        self.rules = board.BoardRules.from_config(settings)
        self.hidden = frozenset(patrol.RESTRICTED_KINDS)  # what a captain sees of the log, no more
        self._board = board

    def newest_id(self) -> int:
        from sqlalchemy import func, select

        from server.domain.patrol import LogEntry

        with self.sessions() as session:
            return session.scalar(select(func.max(LogEntry.id))) or 0

    def read(self) -> Any:
        with self.sessions() as session:
            return self._board.read_board(session, self.settings["CLOCK"](), self.rules, hidden_kinds=self.hidden,
                                          show_silent=False)

    def close(self) -> None:
        self.engine.dispose()


def print_once(reader: Reader, zone: ZoneInfo | None, write: Callable[[str], Any] = print) -> None:
    for text, urgent in lines(reader.read(), zone):
        write(text)


def _draw(screen: Any, rows: list[tuple[str, bool]]) -> None:
    import curses

    screen.erase()
    height, width = screen.getmaxyx()
    urgent_style = curses.A_BOLD | (curses.color_pair(1) if curses.has_colors() else curses.A_REVERSE)
    for y, (text, urgent) in enumerate(rows[:height]):
        try:
            # The last cell of the screen cannot be written without an error: stop one short.
            screen.addnstr(y, 0, text, max(0, width - 1), urgent_style if urgent else curses.A_NORMAL)
        except curses.error:
            pass
    screen.refresh()


def run_screen(reader: Reader, zone: ZoneInfo | None, stop: threading.Event) -> None:
    """Full screen until q, Ctrl-C or SIGTERM: redrawn at once when something is logged, else every REDRAW_S."""
    import curses
    import time

    def loop(screen: Any) -> None:
        curses.curs_set(0)
        if curses.has_colors():
            curses.start_color()
            curses.use_default_colors()
            curses.init_pair(1, curses.COLOR_RED, -1)
        screen.timeout(int(POLL_S * 1000))  # getch waits this long: the poll's pace
        newest, drawn_at = -1, 0.0
        while not stop.is_set():
            latest = reader.newest_id()
            if latest != newest or time.monotonic() - drawn_at >= REDRAW_S:
                newest, drawn_at = latest, time.monotonic()
                _draw(screen, lines(reader.read(), zone))
            key = screen.getch()
            if key in (ord("q"), ord("Q"), 27):
                return
            if key == curses.KEY_RESIZE:
                drawn_at = 0.0

    curses.wrapper(loop)


def main(argv: list[str] | None = None, prog: str = "safebench board") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The host's board in the terminal: who is on shift, open alerts and arrest cases, the radio, "
                    "the latest log entries. Redraws live until q or Ctrl-C; prints once when not on a terminal.")
    parser.add_argument("--once", action="store_true", help="Print the board once and exit (as in a pipe).")
    args = parser.parse_args(argv)

    from server import config
    from server.migrating import schema_ready

    instance = config.instance_path_from_env()
    settings = config.load_settings(instance)
    if not schema_ready(instance, settings):
        print("Error: the database could not be brought to the newest schema; see the messages above.",
              file=sys.stderr)
        return 1
    return show(settings, once=args.once)


def show(settings: Mapping[str, Any], *, once: bool = False) -> int:
    """The board on this terminal, or printed once (``once``, or output that is not a terminal)."""
    zone = _zone(settings)
    reader = Reader(settings)
    try:
        if once or not (sys.stdout.isatty() and sys.stdin.isatty()):
            try:
                print_once(reader, zone)
                sys.stdout.flush()
            except BrokenPipeError:
                # Piped into `head` or a pager that quit: what was wanted was read, nothing went wrong.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        stop = threading.Event()
        # SIGTERM and Ctrl-C end the loop at its next turn, with the terminal put back as it was.
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            run_screen(reader, zone, stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
    finally:
        reader.close()

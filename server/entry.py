"""The ``safebench`` command's front door (and ``python -m server``'s).

Every command goes through the Flask CLI in server/cli.py except those that
run for as long as the hub does and need no Flask:
- ``bridge`` goes straight to the lean bridge process (radio_bridge/main.py).
  After a crash the bridge is restarted at once, and packets that reach the
  USB radio while no bridge reads them are lost: loading Flask, the app and
  Alembic before opening the port took about a second here (several on a Pi
  Zero 2 W), and that was a second of lost check-ins.
- ``up`` goes to the supervisor (server/supervisor.py, standard library only).
- ``worker`` goes to the Flask-free scheduler (server/scheduler.py).
- ``board`` goes to the terminal board (server/board_terminal.py), which reads the database directly.
Their ``--help`` still goes through the Flask CLI, which lists every command.
"""

from __future__ import annotations

import sys

from server.config import instance_path_from_env
from server.private_files import keep_private


def main() -> None:
    # Before anything is opened or written: every file of the hub is its user's alone.
    keep_private(instance_path_from_env())
    args = sys.argv[1:]
    if args[:1] == ["bridge"] and not {"-h", "--help"} & set(args):
        from radio_bridge.main import main as run_bridge

        sys.exit(run_bridge(args[1:], prog="safebench bridge"))
    if args[:1] == ["up"] and not {"-h", "--help"} & set(args):
        from server.supervisor import main as supervise

        sys.exit(supervise(args[1:], prog="safebench up"))
    if args[:1] == ["worker"] and not {"-h", "--help"} & set(args):
        import radio_bridge.loaded_when_used  # noqa: F401  (as the bridge does: 5 MB of modules never used)
        from server.scheduler import worker_main

        sys.exit(worker_main(args[1:], prog="safebench worker"))
    if args[:1] == ["board"] and not {"-h", "--help"} & set(args):
        # The board in a terminal reads the database as the scheduler does: no Flask to load first.
        from server.board_terminal import main as board

        sys.exit(board(args[1:], prog="safebench board"))
    if args[:1] == ["serve"] and not {"-h", "--help"} & set(args):
        # The web server as the bridge: asyncio (through SQLAlchemy) and importlib.metadata wait until used,
        # and so do the web libraries' modules it never uses (ssl among them).
        from radio_bridge.loaded_when_used import for_the_web_server

        for_the_web_server()
    from server.cli import main as cli

    cli()

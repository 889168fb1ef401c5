"""Running the real ``safebench`` command in a child process, as a host would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SAFEBENCH = str(Path(sys.executable).with_name("safebench"))


def env_for(instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBENCH_")}
    env.update({"SAFEBENCH_INSTANCE": str(instance), **extra})
    from tests import postgres

    if (database := postgres.instance_url(instance)) and "SAFEBENCH_DATABASE_URL" not in env:
        env["SAFEBENCH_DATABASE_URL"] = database  # the PostgreSQL run: the hub's own database, as make_app made it
    return env


def safebench(instance: Path, *args: str, stdin: str | None = None, timeout: float = 60,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``safebench ARGS`` on ``instance``; ``env`` adds variables (settings, a PATH) to the host's own."""
    return subprocess.run(
        [SAFEBENCH, *args], input=stdin, capture_output=True, text=True, env=env_for(instance, **(env or {})),
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, seconds: float = 30) -> int:
    """Poll until the server answers; returns the status of the first answer."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

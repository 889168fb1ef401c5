"""A real Mosquitto for the federation's stories: on loopback, on a free port, its state in a test folder.

Configured from hub_setup's own broker files (the ACL a neighbourhood installs,
the listener with or without its TLS), never the system service.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parents[1]
BROKER_FILES = REPO / "hub_setup" / "files" / "etc" / "mosquitto"


def mosquitto_command() -> str | None:
    """Debian puts mosquitto in /usr/sbin, which an ordinary user's PATH may lack."""
    return shutil.which("mosquitto") or next((path for path in ("/usr/sbin/mosquitto",) if os.access(path, os.X_OK)),
                                             None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_certificates(folder: Path, host: str = "127.0.0.1") -> Path:
    """A private CA and a server certificate for ``host`` (as install.sh makes them); returns the CA file."""
    folder.mkdir(parents=True, exist_ok=True)
    script = (REPO / "hub_setup" / "broker-certificates.sh")
    subprocess.run(["bash", str(script), str(folder), host], check=True, capture_output=True, timeout=60)
    return folder / "ca.crt"


class Broker:
    """``mosquitto -c conf`` started by the test: stop it, kill it, start it again on the same port and state."""

    def __init__(self, folder: Path, federation: str, users: dict[str, str], tls: bool = False,
                 extra_acl: str = "", staged: Path | None = None) -> None:
        """``staged``: a root install.sh staged with --mqtt-broker, whose rendered files are used as they are
        (their paths moved into ``folder``, their port to a free one on loopback); else hub_setup's templates."""
        self.folder = folder
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data").mkdir(exist_ok=True)
        passwd = folder / "passwd"
        passwd.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=30)
        if staged is not None:
            acl = (staged / "etc/mosquitto/safebench/acl").read_text()
            conf = (staged / "etc/mosquitto/conf.d/safebench-federation.conf").read_text()
            conf = conf.replace("/etc/mosquitto/safebench", str(folder))
            conf = re.sub(r"(?m)^listener \d+$", f"listener {self.port} 127.0.0.1", conf)
        else:
            acl = (BROKER_FILES / "safebench" / "acl").read_text().replace("@FEDERATION@", federation)
            conf = (BROKER_FILES / "conf.d" / "safebench-federation.conf").read_text()
            conf = conf.replace("@BROKER_DIR@", str(folder)).replace("@BROKER_PORT@", f"{self.port} 127.0.0.1")
        (folder / "acl").write_text(acl + extra_acl)
        self.ca_file = make_certificates(folder) if tls else None
        if not tls:
            conf = "\n".join(line for line in conf.splitlines()
                             if not line.startswith(("certfile", "keyfile", "tls_version")))
        # What Debian's main mosquitto.conf adds around it: its state on disk (here, the test's folder).
        conf += f"\npersistence true\npersistence_location {folder / 'data'}/\nlog_dest file {folder / 'log'}\n" \
                "log_type all\n"
        # Started as root (a CI container), mosquitto would become the mosquitto user, who cannot read tmp_path.
        conf += f"user {getpass.getuser()}\n"
        (folder / "mosquitto.conf").write_text(conf)
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.process = subprocess.Popen([mosquitto_command(), "-c", str(self.folder / "mosquitto.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto did not start: {self.process.stderr.read().decode()} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto is not listening on {self.port}: {self.log()}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Gone at once, as a broker is when its machine loses power."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class RawClient:
    """A plain MQTT client for the stories: someone with a login (or the broker itself) publishing straight in.

    paho here is only the tests' tool, as mosquitto_pub would be; the hub's one module that imports it is
    radio_bridge/federation_link.py.
    """

    def __init__(self, broker: Broker, user: str, password: str, client_id: str = "", wait: float = 5.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"raw-{user}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.connack = None
        self.acks: dict[int, int] = {}
        self.heard: list[tuple[str, bytes]] = []
        self.client.on_connect = lambda _c, _u, _f, code, _p: setattr(self, "connack", code)
        self.client.on_publish = lambda _c, _u, mid, code, _p: self.acks.__setitem__(mid, code.value)
        self.client.on_message = lambda _c, _u, message: self.heard.append((message.topic, message.payload))
        self.client.connect("127.0.0.1", broker.port)
        self.turn_until(lambda: self.connack is not None, wait)

    def turn_until(self, done, seconds: float = 5.0) -> bool:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                return False
            if self.client.loop(timeout=0.05) not in (0,) and self.connack is None:
                raise ConnectionError("the broker hung up before answering")
        return True

    def publish(self, topic: str, payload: bytes) -> int:
        """The broker's reason code for it (0: taken; 135: not authorised)."""
        info = self.client.publish(topic, payload, qos=1)
        self.turn_until(lambda: info.mid in self.acks)
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        self.turn_until(lambda: False, 0.3)

    def close(self) -> None:
        self.client.disconnect()

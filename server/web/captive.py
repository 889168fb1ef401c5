"""The bench WiFi's captive page: a phone that joins the WiFi is shown the bench page.

On the bench WiFi every name resolves to the hub (a dnsmasq rule that
hub_setup/ installs). A phone that joins a network asks a well-known address
whether it is online: Android fetches ``/generate_204`` and expects an empty
204, Apple ``/hotspot-detect.html`` and expects "Success", Windows
``/connecttest.txt`` and expects "Microsoft Connect Test". Any other answer,
here a redirect, tells the phone it is behind a captive portal, and it opens
the address it was sent to, the bench page, by itself. Answering what the
phone expects would make it believe it is online and show nothing.

Only there: with ``CAPTIVE_PORTAL`` off (the default; the install script
turns it on with the hotspot) none of this is registered, so a hub reached
under its own name elsewhere is left alone.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, redirect, request

from server.web.access import public

bp = Blueprint("captive", __name__)

# The addresses phones and browsers ask to find out whether they are online.
PROBE_PATHS = (
    "/generate_204",  # Android, Chrome
    "/gen_204",  # Android, older
    "/hotspot-detect.html",  # Apple
    "/library/test/success.html",  # Apple, older
    "/connecttest.txt",  # Windows 10 and later
    "/ncsi.txt",  # Windows, older
    "/redirect",  # Windows opens this one in the browser
    "/canonical.html",  # Firefox
    "/success.txt",  # Firefox
)


def bench_host() -> str:
    """The host name or address in ``BENCH_URL``: where phones on the bench WiFi are sent."""
    return (urlsplit(current_app.config["BENCH_URL"]).hostname or "").lower()


def _name_of(host: str) -> str:
    """``request.host`` without its port, lower case: ``10.42.0.1:8080`` -> ``10.42.0.1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0].lower()
    name, _, port = host.rpartition(":")
    return (name if port.isdigit() else host).lower().rstrip(".")


def is_own_host(host: str, bench: str, machine: str) -> bool:
    """Whether a request for ``host`` is meant for the hub itself, not for some site a phone asked for.

    The bench's own name, any address (nobody types 10.42.0.1 meaning
    Google), ``localhost``, and the Pi's own names on a home network
    (``raspberrypi``, ``raspberrypi.local``, ``raspberrypi.lan``), so a host
    who reaches the hub over ethernet is not sent to the WiFi address.
    """
    name = _name_of(host)
    if not name or name in {bench, "localhost"} or name.endswith((".local", ".localhost")):
        return True
    if machine and (name == machine or name.startswith(f"{machine}.")):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def to_the_bench() -> Response:
    response = redirect(current_app.config["BENCH_URL"], 302)
    # A phone that cached this answer would not ask again the next time it joins.
    response.headers["Cache-Control"] = "no-store"
    return response


def send_strangers_to_the_bench() -> Response | None:
    """Any address but the hub's own, on the bench WiFi, is answered with the bench page."""
    machine = current_app.extensions["captive_machine_name"]
    if is_own_host(request.host, bench_host(), machine):
        return None
    return to_the_bench()


@public
def probe() -> Response:
    """A connectivity probe on the hub's own address: a redirect, never the answer the phone hopes for."""
    return to_the_bench()


for _path in PROBE_PATHS:
    bp.add_url_rule(_path, "probe", probe, methods=["GET"])


def init_app(app: Flask) -> None:
    if not app.config["CAPTIVE_PORTAL"]:
        return  # away from the bench WiFi, /generate_204 and the like are unknown addresses
    # The Pi's name as its home network knows it, read once.
    app.extensions["captive_machine_name"] = socket.gethostname().lower()
    # Before the access check: a phone asking for google.com/anything must
    # get the bench page, not a login form on a borrowed address.
    app.before_request(send_strangers_to_the_bench)
    app.register_blueprint(bp)

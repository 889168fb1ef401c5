"""The hub host's side: dashboard, full log, stewards and areas, roles."""

from flask import Blueprint

from server.domain.people import CAPTAIN, DISPATCH, HOST
from server.web.access import requires

bp = Blueprint("host", __name__, url_prefix="/host")


@bp.get("/")
@requires()
def dashboard() -> str:
    return "dashboard (being built)"


@bp.get("/log")
@requires(HOST, DISPATCH, CAPTAIN)
def log() -> str:
    return "log (being built)"


@bp.get("/stewards")
@requires(HOST, CAPTAIN)
def stewards() -> str:
    return "stewards (being built)"


@bp.get("/roles")
@requires(HOST)
def roles() -> str:
    return "roles (being built)"

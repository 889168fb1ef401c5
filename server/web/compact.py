"""The Community Safety Compact: read, sign, and (for hosts) edit."""

from flask import Blueprint

from server.domain.people import HOST
from server.web.access import public, requires

bp = Blueprint("compact", __name__)


@bp.get("/compact")
@public
def show() -> str:
    return "compact (being built)"


@bp.get("/host/compact")
@requires(HOST)
def edit() -> str:
    return "edit (being built)"

"""The aid board: offers and asks, messages through the hub, and moderation."""

from flask import Blueprint

from server.domain.people import HOST
from server.web.access import public, requires

bp = Blueprint("aid", __name__)


@bp.get("/aid")
@public
def board() -> str:
    return "board (being built)"


@bp.route("/aid/new", methods=["GET", "POST"])
@public
def new() -> str:
    return "new (being built)"


@bp.get("/aid/<int:post_id>")
@public
def show(post_id: int) -> str:
    return "show (being built)"


@bp.get("/host/aid")
@requires(HOST)
def moderation() -> str:
    return "moderation (being built)"

"""Mediation: the neighbour's form and status page, and the mediators' queue."""

from flask import Blueprint

from server.domain.people import MEDIATOR
from server.web.access import public, requires

bp = Blueprint("mediation", __name__)


@bp.route("/mediation/new", methods=["GET", "POST"])
@public
def new() -> str:
    return "mediation form (being built)"


@bp.get("/host/mediation")
@requires(MEDIATOR)
def queue() -> str:
    return "queue (being built)"

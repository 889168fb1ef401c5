"""The public side of the bench: the page behind the QR code, and the published log."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from server.domain import allies, bench_view
from server.extensions import db
from server.web.access import now, public
from server.web.caching import public_page, share_for_at_most

bp = Blueprint("bench", __name__)


@bp.get("/")
@public
@public_page
def index() -> str:
    # Counts by published area; a handle only where its steward chose to show it; of arrest
    # cases only how many taken and how many out; nothing sealed (domain/bench_view.py).
    moment = now()
    page = bench_view.bench_page(db.session.connection(), moment, current_app.config["PUBLIC_TIME_ROUNDING_MINUTES"],
                                 zone=allies.zone_of(current_app.config["TIMEZONE"]))
    if page.allies is not None and page.allies.changes_at is not None:
        # An ally shown open must not stay "open" in a shared copy after it closed.
        share_for_at_most((page.allies.changes_at - moment).total_seconds())
    return render_template("bench/index.html", **{field: getattr(page, field) for field in page.__dataclass_fields__})


@bp.get("/log")
@public
@public_page
def public_log() -> str:
    cfg = current_app.config
    entries = bench_view.public_log(
        db.session.connection(), limit=cfg["PUBLIC_LOG_LIMIT"], rounding_minutes=cfg["PUBLIC_TIME_ROUNDING_MINUTES"]
    )
    return render_template("bench/log.html", entries=entries, rounding=cfg["PUBLIC_TIME_ROUNDING_MINUTES"])

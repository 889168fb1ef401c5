"""The public side of the bench: the page behind the QR code, and the published log."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from server.domain import aid, audit, cases, compact, complaints, patrol
from server.extensions import db
from server.web.access import now, public
from server.web.caching import public_page

bp = Blueprint("bench", __name__)


@bp.get("/")
@public
@public_page
def index() -> str:
    cfg = current_app.config
    return render_template(
        "bench/index.html",
        # Counts by published area; a handle only where its steward chose to show it.
        on_patrol=patrol.public_patrol(db.session),
        log=patrol.public_log(db.session, limit=8, rounding_minutes=cfg["PUBLIC_TIME_ROUNDING_MINUTES"]),
        offers=aid.open_posts(db.session, now(), limit=5),
        open_post_count=aid.count_open_posts(db.session, now()),
        signatures=compact.signature_count(db.session),
        # Of arrest cases the public sees only this: how many taken, how many out.
        arrests=cases.public_counts(db.session),
        # The public audit: this cycle's, and the last ones kept.
        audits=audit.past_cycles(db.session, now(), limit=2),
        complaint_counts=complaints.public_counts(db.session, now()),
    )


@bp.get("/log")
@public
@public_page
def public_log() -> str:
    cfg = current_app.config
    entries = patrol.public_log(
        db.session, limit=cfg["PUBLIC_LOG_LIMIT"], rounding_minutes=cfg["PUBLIC_TIME_ROUNDING_MINUTES"]
    )
    return render_template("bench/log.html", entries=entries, rounding=cfg["PUBLIC_TIME_ROUNDING_MINUTES"])

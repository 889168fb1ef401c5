"""The record of every power used, for hosts and the accountability circle to read.

Read only: no route here (or anywhere) changes or deletes a row of it.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from server.domain import power_record
from server.domain.people import ACCOUNTABILITY, HOST, ROLE_LABELS
from server.i18n import N_, Labels
from server.extensions import db
from server.web.access import requires
from server.web.converters import MAX_ROW_ID

bp = Blueprint("record", __name__, url_prefix="/host/record")

PAGE_SIZE = 50
READERS = (HOST, ACCOUNTABILITY)
ROLE_NAMES = Labels({**{role: ROLE_LABELS.untranslated(role) for role in ROLE_LABELS},
                     power_record.SYSTEM_ROLE: N_("The hub itself")})


def _before() -> int | None:
    value = request.args.get("before") or ""
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ROW_ID else None


@bp.get("/")
@requires(*READERS)
def page() -> ResponseReturnValue:
    before = _before()
    # One extra row tells whether there is an older page at all.
    rows = power_record.entries(db.session, limit=PAGE_SIZE + 1, before_id=before)
    uses = rows[:PAGE_SIZE]
    return render_template(
        "record/page.html",
        uses=uses,
        before=before,
        older=uses[-1].id if len(rows) > PAGE_SIZE else None,
        total=power_record.count(db.session),
        broken=power_record.broken_links(db.session),
        newest=next(iter(power_record.entries(db.session, limit=1)), None),
        role_names=ROLE_NAMES,
    )

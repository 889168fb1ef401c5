"""The ledger's printed sheets, listed with their hashes, and a check for a photographed one.

Public, as the sheets are: a sheet shows what the public ledger shows, and a
hash tells nothing about anyone. A sheet's QR code opens the check page with
the sheet's month, hash and previous hash in its address, so a phone on the
bench WiFi checks a sheet at the assembly; the hash typed by hand works too.
The check builds that one month again from the ledger (a few thousand rows at
most); `safebench ledger-verify` checks the whole chain at the Pi.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from server.domain import ledger_sheets
from server.domain.errors import DomainError
from server.extensions import db, limiter
from server.web.access import public
from server.web.caching import public_page

bp = Blueprint("ledger_sheets", __name__, url_prefix="/ledger/sheets")


@bp.get("/")
@public
@public_page
def index() -> ResponseReturnValue:
    return render_template("ledger_sheets/index.html", sheets=ledger_sheets.every_sheet(db.session))


# Each check builds a month again from the ledger (0.1-0.5 s here, more on a Pi): plenty for an assembly's
# phones, each with its own address on the bench WiFi, and no lever for one address to keep the hub busy.
CHECK_LIMIT = "30 per hour"


@bp.get("/check")
@limiter.limit(CHECK_LIMIT, exempt_when=lambda: not request.args.get("hash"))
@public
def check() -> ResponseReturnValue:
    typed = (request.args.get("hash") or "").strip()[:200]
    verdict, error = None, None
    if typed:
        # The QR code's address carries month and previous hash too; a typed hash comes alone.
        month = (request.args.get("month") or "").strip()[:7]
        previous = (request.args.get("previous") or "").strip().lower()[:64]
        try:
            claim = ledger_sheets.read_claim(typed)
            if month:
                ledger_sheets.Month.parse(month)
            # A pasted address keeps what it carries; the QR code's own query string fills in the rest.
            claim = ledger_sheets.Claim(claim.hash, claim.period or month or None, claim.previous_hash
                                        or (previous if ledger_sheets.HASH.match(previous) else None))
            verdict = ledger_sheets.check(db.session, claim, ledger_sheets.ledger_rows)
        except DomainError as refused:
            error = refused.message
    return render_template("ledger_sheets/check.html", typed=typed, verdict=verdict, error=error,
                           sheets=ledger_sheets.every_sheet(db.session)), 400 if error else 200

"""``safebench ledger-sheet`` and ``safebench ledger-verify``: the ledger on paper, and checking a photo of it.

Kept beside server/cli.py (which adds them to its COMMANDS) and built on its
printing helpers, as the posters are: HTML and the QR code as PNG always, PDF
and a PNG of the first page through chromium when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import click
from flask import current_app

from server.cli import (
    _bench_url,
    _local_date,
    _now,
    _print_poster,
    _save,
    _text_setting,
    with_schema,
)
from server.domain import ledger_sheets
from server.domain.errors import DomainError
from server.extensions import db
from server.i18n import gettext as _
from server.i18n import ngettext

ZBAR_HINT = "sudo apt-get install zbar-tools"
HTML_SUFFIXES = (".html", ".htm")


def _month(text: str | None) -> ledger_sheets.Month:
    if text is None:
        return ledger_sheets.last_closed_month(_local_date(_now()))
    try:
        return ledger_sheets.Month.parse(text)
    except DomainError as error:
        raise click.BadParameter(error.message, param_hint="'--month'") from None


def _bounds(period: ledger_sheets.Month) -> tuple[datetime, datetime]:
    """The month in the hub's time zone, as the naive UTC the ledger keeps."""
    from server.web.filters import from_local

    start, end = period.first_day, period.next().first_day
    return (from_local(datetime(start.year, start.month, start.day)),
            from_local(datetime(end.year, end.month, end.day)))


def _check_url() -> str:
    from server.printing.posters import page_url

    return page_url(_bench_url(), current_app.url_map.bind("localhost").build("ledger_sheets.check"))


@click.command("ledger-sheet")
@click.option("--month", metavar="YYYY-MM",
              help="The month to print, e.g. 2026-11 (default: the last closed month, by the hub's clock).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write into (default: the instance folder).")
@with_schema
def ledger_sheet_command(month: str | None, out: Path | None) -> None:
    """Print a month of the mutual-credit ledger for the assembly, with its hash chain: HTML, PDF and PNG.

    Each entry is hashed into a running chain that starts from the previous
    month's sheet; the sheet carries both hashes and a QR code to check it on
    the hub. The first print of a month is recorded; printing it again gives
    the same sheet and hash. Every member appears as "M" (with their handle only
    if they chose to show their balance); a memo between two members is not
    printed; bail payouts show a case code at most. Check a sheet or a photo of it with
    `safebench ledger-verify`.
    """
    from server.printing.ledger_sheet import sheet_page
    from server.web.filters import to_local

    period = _month(month)
    check_url = _check_url()  # before anything is recorded: a bad BENCH_URL stops here
    bounds = _bounds(period)

    def work(session):
        return ledger_sheets.print_sheet(session, _now(), period, bounds, ledger_sheets.ledger_rows,
                                         ledger_sheets.first_entry_at(session))

    sheet = _save(work)
    page = sheet_page(bench_name=_text_setting("BENCH_NAME"), sheet=sheet, check_url=check_url,
                      printed_on=_local_date(_now()), local=to_local)
    _print_poster(page, out)
    first = sheet.recorded is not None and sheet.recorded.reprinted_at is None
    click.echo(ngettext("The sheet for %(period)s: %(num)d entry.", "The sheet for %(period)s: %(num)d entries.",
                        len(sheet.lines), period=str(period)))
    click.echo(_("Its hash: %(hash)s", hash=sheet.hash))
    click.echo(_("The previous sheet's hash: %(hash)s", hash=sheet.previous_hash))
    if first:
        click.echo(_("Recorded: printing %(period)s again gives this same hash.", period=str(period)))
    else:
        click.echo(_("Printed again: the ledger still gives the hash recorded on %(day)s.",
                     day=sheet.recorded.printed_at.strftime("%Y-%m-%d")))


def _decode_image(image: Path) -> str:
    """The sheet's code from a photo or a scan, through zbar; a plain message when zbar or the code is missing."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        raise click.ClickException(_("Reading a photo needs zbar (%(hint)s). Or type the hash printed on the "
                                     "sheet instead of the photo.", hint=ZBAR_HINT))
    try:
        done = subprocess.run([zbarimg, "--raw", "-q", "-Sbinary", str(image)], capture_output=True, timeout=120,
                              check=False)
    except subprocess.TimeoutExpired:
        raise click.ClickException(_("zbar took too long to read %(image)s.", image=image.name)) from None
    if done.returncode != 0 or not done.stdout.strip():
        raise click.ClickException(_("No QR code could be read in %(image)s: take the photo closer and straight on, "
                                     "in good light, or type the hash printed on the sheet.", image=image.name))
    payloads = done.stdout.decode("utf-8", "replace").splitlines()
    for payload in payloads:
        try:
            ledger_sheets.read_claim(payload)
        except DomainError:
            continue
        return payload
    raise click.ClickException(_("The QR code in %(image)s is not a ledger sheet's.", image=image.name))


def _claim_from_html(page: Path) -> ledger_sheets.Claim:
    """The claim of a saved sheet, after checking that its lines still give the hash it prints."""
    from server.printing.ledger_sheet import NotASheet, read_html

    try:
        read = read_html(page.read_text(encoding="utf-8", errors="replace"))
    except NotASheet as error:
        raise click.ClickException(str(error)) from None
    if read.recomputed() != read.hash:
        click.echo(_("NO   %(name)s: its lines do not give the hash it prints: the sheet's text was changed.",
                     name=page.name))
        sys.exit(1)
    click.echo(ngettext("ok   %(name)s: its %(num)d line gives the hash it prints.",
                        "ok   %(name)s: its %(num)d lines give the hash it prints.", len(read.entries), name=page.name))
    return ledger_sheets.Claim(read.hash, read.period, read.previous_hash)


@click.command("ledger-verify")
@click.argument("sheet")
@with_schema
def ledger_verify_command(sheet: str) -> None:
    """Check a printed ledger sheet against the hub: SHEET is its hash, a photo or scan of its QR code, the sheet's
    HTML file, or a month (YYYY-MM).

    Says whether the hub printed that sheet, whether the ledger's entries
    still give its hash, and whether it chains from the month before, back
    to the first sheet. Exit 0 when all holds, 1 naming what does not.
    """
    path = Path(sheet)
    if ledger_sheets.PERIOD.match(sheet.strip()):
        recorded = ledger_sheets.recorded(db.session, _month(sheet))
        if recorded is None:
            raise click.ClickException(_("No sheet was printed for %(period)s.", period=sheet.strip()))
        claim = ledger_sheets.Claim(recorded.hash, recorded.period, recorded.previous_hash)
    elif path.is_file():
        if path.suffix.lower() in HTML_SUFFIXES:
            claim = _claim_from_html(path)
        else:
            claim = _read_claim(_decode_image(path))
    elif len(sheet) < 200 and any(sheet.lower().endswith(s) for s in (".png", ".jpg", ".jpeg", *HTML_SUFFIXES)):
        raise click.ClickException(_("%(path)s: no such file.", path=sheet))
    else:
        claim = _read_claim(sheet)
    verdict = ledger_sheets.check(db.session, claim, ledger_sheets.ledger_rows, whole_chain=True)
    for finding in verdict.findings:
        click.echo(("ok   " if finding.ok else "NO   ") + finding.message)
    if verdict.ok:
        click.echo(_("The sheet for %(period)s is the hub's, unchanged, and chains back to the first sheet.",
                     period=verdict.sheet.period))
        return
    click.echo(_("This sheet does not match the hub's record: tell the assembly."))
    sys.exit(1)


def _read_claim(text: str) -> ledger_sheets.Claim:
    try:
        return ledger_sheets.read_claim(text)
    except DomainError as error:
        raise click.ClickException(error.message) from None


COMMANDS = (ledger_sheet_command, ledger_verify_command)

"""The ledger's monthly sheet as a standalone A4 page, and reading one back to check it.

The page is laid out like the posters (printing/_poster_base.html, QR code
inline as SVG, also written as PNG beside it), with the QR code and the hashes
at the top of the first page, so a photograph of that page is enough to check
the sheet against the hub. Each entry is one table row whose cells are the
fields hashed into the chain (server/domain/ledger_sheets.py), its time
in a ``<time datetime>`` (UTC; the cell shows the hub's local time), so that
``read_html`` can recompute the hash from a saved or edited copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from html.parser import HTMLParser

from server import i18n
from server.domain import ledger_sheets
from server.printing.posters import Poster, QrCode, _environment


def sheet_page(*, bench_name: str, sheet: ledger_sheets.Sheet, check_url: str, printed_on: date,
               local: Callable[[datetime], datetime]) -> Poster:
    """The sheet as a page, named ``ledger-<month>``, with one QR code: the hub's check page for this sheet."""
    with i18n.speaking(None):
        code = QrCode("qr", ledger_sheets.qr_payload(check_url, sheet),
                      i18n.gettext("check the ledger sheet for %(period)s on the hub", period=str(sheet.period)))
        html = _environment().get_template("printing/ledger_sheet.html").render(
            bench_name=bench_name, sheet=sheet, code=code, check_url=check_url, printed_on=printed_on,
            local=local, utc_stamp=ledger_sheets.utc_stamp, glosses=glosses(), genesis=ledger_sheets.GENESIS,
        )
    return Poster(f"ledger-{sheet.period}", html, (code,))


def glosses() -> dict[str, str]:
    """The hashed labels that are words, in the language being spoken: shown beside them where they differ."""
    from server.domain import ledger

    return {ledger_sheets.ANONYMOUS: i18n.gettext("anonymous"), ledger.FUND_NAME: i18n.gettext(ledger.FUND_NAME),
            ledger.OUTSIDE_NAME: i18n.gettext(ledger.OUTSIDE_NAME)}


# -- reading a sheet back ----------------------------------------------------------


@dataclass(frozen=True)
class ReadSheet:
    """What a sheet's HTML says: its claimed hashes and month, and each entry's hashed fields."""

    period: str
    previous_hash: str
    hash: str
    entries: tuple[tuple[int, str, str, str, str, str], ...]  # id, UTC stamp, from, to, amount, memo

    def recomputed(self) -> str:
        return ledger_sheets.chain_hash(self.period, self.previous_hash, (
            ledger_sheets._json(list(entry)) for entry in self.entries))


class _Cells(HTMLParser):
    """The sheet's marked elements: ``data-sheet-*`` attributes and each entry row's marked cells."""

    FIELDS = ("entry", "from", "to", "amount", "memo")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.rows: list[dict[str, str]] = []
        self._field: str | None = None
        self._depth = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in values.items():
            if name.startswith("data-sheet-") and value is not None:
                self.meta[name.removeprefix("data-sheet-")] = value
        classes = (values.get("class") or "").split()
        if tag == "tr" and "entry" in classes:
            self.rows.append({})
        if tag == "time" and self.rows and values.get("datetime"):
            self.rows[-1]["at"] = values["datetime"] or ""
        if self._field is not None:
            self._depth += 1
            return
        field = next((name for name in self.FIELDS if f"f-{name}" in classes), None)
        if field is not None and self.rows:
            self._field, self._depth, self._text = field, 1, []

    def handle_endtag(self, tag: str) -> None:
        if self._field is None:
            return
        self._depth -= 1
        if self._depth == 0:
            self.rows[-1][self._field] = " ".join("".join(self._text).split())
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self._text.append(data)


class NotASheet(ValueError):
    """The file is not a ledger sheet the hub printed (or too damaged to read)."""


def read_html(text: str) -> ReadSheet:
    cells = _Cells()
    cells.feed(text)
    cells.close()
    meta = cells.meta
    if not {"period", "hash", "previous"} <= meta.keys():
        raise NotASheet(i18n.gettext("This file is not a ledger sheet printed by `safebench ledger-sheet`."))
    entries = []
    for number, row in enumerate(cells.rows, start=1):
        try:
            entries.append((int(row["entry"].lstrip("#")), row["at"], row["from"], row["to"], row["amount"],
                            row.get("memo", "")))
        except (KeyError, ValueError):
            raise NotASheet(i18n.gettext("Line %(n)s of the sheet cannot be read.", n=number)) from None
    return ReadSheet(meta["period"], meta["previous"], meta["hash"], tuple(entries))

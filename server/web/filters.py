"""Template filters: local times, and the few words pages share."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime
from flask import Flask, current_app
from markupsafe import Markup

from server import i18n


def _zone():  # noqa: ANN202
    name = current_app.config.get("TIMEZONE") or ""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            current_app.logger.warning("unknown SAFEBENCH_TIMEZONE %r; showing the Pi's local time", name)
    return None  # astimezone(None) is the machine's local zone


def to_local(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).astimezone(_zone())


def from_local(wall_clock: datetime) -> datetime:
    """A time as a person at the bench reads it (the hub's zone), as the naive UTC the database keeps."""
    zone = _zone()
    aware = wall_clock.replace(tzinfo=zone) if zone else wall_clock.astimezone()
    return aware.astimezone(UTC).replace(tzinfo=None)


def time_filter(moment: datetime | None) -> str:
    local = to_local(moment)
    return local.strftime("%H:%M") if local else ""


def datetime_filter(moment: datetime | None) -> str:
    """"Sun 06 Dec, 21:40", with the day and month named in the language being spoken ("dom 06 dic")."""
    local = to_local(moment)
    return format_datetime(local, "EEE dd MMM, HH:mm", locale=i18n.active()) if local else ""


def date_filter(moment: datetime | None) -> str:
    local = to_local(moment)
    return format_datetime(local, "EEE dd MMM yyyy", locale=i18n.active()) if local else ""


def day_filter(day: date | None) -> str:
    """A calendar day (an assembly's decision), "6 Dec 2026", the month named in the language being spoken."""
    return format_date(day, "d MMM yyyy", locale=i18n.active()) if day else ""


def iso_filter(moment: datetime | None) -> str:
    local = to_local(moment)
    return local.isoformat(timespec="minutes") if local else ""


def unseal_filter(value: str | None) -> str | Markup:
    """Sealed words for a reader whose roles open them; otherwise a plain "sealed" mark, never ciphertext."""
    from server.web.access import unsealed

    if value is None:
        return ""
    words = unsealed(value)
    if words is None:
        return Markup('<span class="sealed" title="%s">%s</span>') % (
            i18n.gettext("Sealed: only the roles that read this open it, while logged in."), i18n.gettext("sealed"))
    return words


def init_app(app: Flask) -> None:
    app.add_template_filter(unseal_filter, "unseal")
    app.add_template_filter(time_filter, "time")
    app.add_template_filter(datetime_filter, "datetime")
    app.add_template_filter(date_filter, "date")
    app.add_template_filter(iso_filter, "iso")
    app.add_template_filter(day_filter, "day")

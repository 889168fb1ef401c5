"""Drills: the monthly rehearsal of the worst night.

A drill starts a mock SOS or a mock arrest case. Everything it sends is
marked DRILL on the air, in the log and on pages, and it never reaches a
public page or the public counts. The drill report times each ring's
first action from the notice, for the assembly to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain import alerts, cases, outbox, patrol
from server.domain.base import Base
from server.domain.errors import Invalid, NotFound
from server.domain.people import Member
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

SOS = "sos"
ARREST = "arrest"
KINDS = Labels({SOS: N_("Mock SOS"), ARREST: N_("Mock arrest")})


class Drill(Base):
    __tablename__ = "drill"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id", ondelete="SET NULL"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("arrest_case.id", ondelete="SET NULL"))
    ended_at: Mapped[datetime | None]
    # Written when the drill ends: the alert or case it timed is purged in time, the report stays.
    report: Mapped[str | None] = mapped_column(Text)

    started_by: Mapped[Member | None] = relationship()


def start(session: Session, now: datetime, kind: str, member: Member | None, place: str | None,
          hotline: str = "") -> Drill:
    if kind not in KINDS:
        raise Invalid(_("Choose a mock SOS or a mock arrest."), field="kind")
    place = clean_text(place, field="place", max_length=patrol.MAX_PLACE, required=False) or "the bench"
    drill = Drill(kind=kind, started_at=now, started_by=member)
    if kind == SOS:
        alert = alerts.raise_alert(session, now, alerts.SOS, member, place, patrol.SOURCE_WEB, raised_by=member,
                                   drill=True, how="drill")
        drill.alert_id = alert.id
    else:
        case = cases.open_case(session, now, place=place, arrested=1, source=patrol.SOURCE_WEB, reported_by=member,
                               description="Drill: no one was arrested.", hotline=hotline, drill=True)
        drill.case_id = case.id
    session.add(drill)
    session.flush()
    return drill


def get_drill(session: Session, drill_id: int) -> Drill:
    drill = session.get(Drill, drill_id)
    if drill is None:
        raise NotFound(_("That drill does not exist."))
    return drill


def list_drills(session: Session, limit: int = 20) -> list[Drill]:
    return list(session.scalars(select(Drill).order_by(Drill.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Timing:
    what: str
    after: timedelta | None  # None: it never happened


def _sent_at(session: Session, dedupe_key: str) -> datetime | None:
    """When the first message with this key (or one of its parts, or per-node copies) went out."""
    key = outbox.OutboxMessage.dedupe_key
    # Not a bare prefix: "case:1" must not match case 12's "case:12".
    same = (key == dedupe_key) | key.startswith(f"{dedupe_key}:", autoescape=True) \
        | key.startswith(f"{dedupe_key}#", autoescape=True)
    return session.scalar(
        select(outbox.OutboxMessage.sent_at).where(same, outbox.OutboxMessage.sent_at.is_not(None))
        .order_by(outbox.OutboxMessage.sent_at).limit(1)
    )


def timings(session: Session, drill: Drill) -> list[Timing]:
    """From the notice to each first action."""
    start_at = drill.started_at

    def since(moment: datetime | None) -> timedelta | None:
        return moment - start_at if moment else None

    if drill.alert_id is not None:
        alert = session.get(alerts.Alert, drill.alert_id)
        if alert is None:
            return []
        first_response = min((r.at for r in alert.responses), default=None)
        return [
            Timing(_("notice on the air"), since(_sent_at(session, f"alert:{alert.id}:0"))),
            Timing(_("first responder acknowledged"), since(first_response)),
            Timing(_("resolved"), since(alert.resolved_at)),
        ]
    case = session.get(cases.ArrestCase, drill.case_id) if drill.case_id is not None else None
    if case is None:
        return []
    rows = [Timing(_("notice on the air"), since(_sent_at(session, f"case:{case.id}")))]
    for ring, name in cases.RINGS.items():
        firsts = [s.done_at for s in case.steps if cases.STEP_KEYS.get(s.key) and cases.STEP_KEYS[s.key].ring == ring]
        rows.append(Timing(_("ring %(ring)d (%(name)s): first action", ring=ring, name=name),
                           since(min(firsts, default=None))))
    rows.append(Timing(_("everyone accounted for (released)"), since(case.closed_at)))
    return rows


def _format(delta: timedelta | None) -> str:
    if delta is None:
        return _("did not happen")
    seconds = int(delta.total_seconds())
    return _("%(min)d min %(sec)02d s", min=seconds // 60, sec=seconds % 60)


def report_text(session: Session, drill: Drill) -> str:
    if drill.report:
        return drill.report
    lines = [_("Drill %(id)s: %(kind)s, started %(at)s UTC", id=drill.id, kind=KINDS[drill.kind],
               at=f"{drill.started_at:%Y-%m-%d %H:%M}")]
    lines += [f"- {t.what}: {_format(t.after)}" for t in timings(session, drill)]
    if drill.ended_at:
        lines.append(_("Ended %(at)s UTC, after %(lasted)s.", at=f"{drill.ended_at:%H:%M}",
                       lasted=_format(drill.ended_at - drill.started_at)))
    else:
        lines.append(_("Still running."))
    return "\n".join(lines) + "\n"


def end(session: Session, now: datetime, drill: Drill, member: Member | None) -> Drill:
    """Stop the drill: its alert is resolved, its case closed, and the report kept."""
    if drill.ended_at is not None:
        return drill
    if drill.alert_id is not None:
        alert = session.get(alerts.Alert, drill.alert_id)
        if alert is not None and alert.is_open:
            alerts.resolve(session, now, alert, member, patrol.SOURCE_WEB, "drill ended", note_required=False)
    if drill.case_id is not None:
        case = session.get(cases.ArrestCase, drill.case_id)
        if case is not None and case.is_open:
            cases.count_out(session, now, case, case.outstanding, member)
    drill.ended_at = now
    drill.report = None
    drill.report = report_text(session, drill)
    session.flush()
    return drill

"""Mediation requests: a neighbour asks for help with a conflict.

Only mediators see what a request says. The neighbour keeps a receipt code
and can check the status with it, but the status page shows only the state
and dates: a code that is lost or shared exposes nothing of the conflict.
Closed requests are deleted after the retention period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain import sealing
from server.domain.base import Base
from server.domain.sealing import SealedText
from server.domain.codes import normalize_receipt_code, unused_receipt_code
from server.domain.errors import Invalid, NotFound
from server.domain.people import Member
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

NEW = "new"
ASSIGNED = "assigned"
IN_PROGRESS = "in_progress"
RESOLVED = "resolved"
CLOSED = "closed"
STATUSES = (NEW, ASSIGNED, IN_PROGRESS, RESOLVED, CLOSED)
FINISHED = (RESOLVED, CLOSED)
STATUS_LABELS = Labels({
    NEW: N_("Received, waiting for a mediator"),
    ASSIGNED: N_("A mediator has taken it"),
    IN_PROGRESS: N_("Mediation in progress"),
    RESOLVED: N_("Resolved"),
    CLOSED: N_("Closed"),
})
# Which way a request may move; reopening a resolved one is allowed because
# conflicts come back.
TRANSITIONS = {
    NEW: (ASSIGNED, CLOSED),
    ASSIGNED: (IN_PROGRESS, RESOLVED, CLOSED, NEW),
    IN_PROGRESS: (RESOLVED, CLOSED, ASSIGNED),
    RESOLVED: (CLOSED, IN_PROGRESS),
    CLOSED: (),
}

URGENCIES = ("low", "soon", "urgent")
URGENCY_LABELS = Labels({"low": N_("When someone can"), "soon": N_("In the next few days"), "urgent": N_("Today — it may escalate")})

MAX_WHAT = 2000
MAX_WHERE = 120
MAX_WHO = 500
MAX_CONTACT = 200
MAX_NOTE = 2000
RECEIPT_PREFIX = "M"


class MediationRequest(Base):
    __tablename__ = "mediation_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    receipt_code: Mapped[str] = mapped_column(String(11), unique=True)
    what: Mapped[str] = mapped_column(SealedText(sealing.MEDIATION))
    where: Mapped[str | None] = mapped_column(SealedText(sealing.MEDIATION))
    who: Mapped[str | None] = mapped_column(SealedText(sealing.MEDIATION))
    urgency: Mapped[str] = mapped_column(String(8))
    contact: Mapped[str | None] = mapped_column(SealedText(sealing.MEDIATION))
    status: Mapped[str] = mapped_column(String(12), default=NEW, index=True)
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    # When a mediator first took it: the public audit's "time to a mediator".
    taken_at: Mapped[datetime | None]

    mediator: Mapped[Member | None] = relationship()
    notes: Mapped[list[MediationNote]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="MediationNote.created_at"
    )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


class MediationNote(Base):
    """A mediator's private note on a request; deleted with it."""

    __tablename__ = "mediation_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("mediation_request.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(SealedText(sealing.MEDIATION))
    created_at: Mapped[datetime]

    request: Mapped[MediationRequest] = relationship(back_populates="notes")
    author: Mapped[Member | None] = relationship()


@dataclass(frozen=True)
class PublicStatus:
    """What the holder of a receipt code may see."""

    receipt_code: str
    status: str
    label: str
    received_on: datetime
    updated_on: datetime


def submit_request(
    session: Session,
    now: datetime,
    *,
    what: str,
    where: str | None = None,
    who: str | None = None,
    urgency: str = "soon",
    contact: str | None = None,
) -> MediationRequest:
    if urgency not in URGENCIES:
        raise Invalid(_("Please choose how soon this needs attention."), field="urgency")
    request = MediationRequest(
        receipt_code=unused_receipt_code(session, MediationRequest.receipt_code, RECEIPT_PREFIX),
        what=clean_text(what, field="description", max_length=MAX_WHAT, multiline=True),
        where=clean_text(where, field="place", max_length=MAX_WHERE, required=False) or None,
        who=clean_text(who, field="people involved", max_length=MAX_WHO, required=False, multiline=True) or None,
        urgency=urgency,
        contact=clean_text(contact, field="way to reach you", max_length=MAX_CONTACT, required=False) or None,
        status=NEW,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    return request


def status_for_receipt(session: Session, raw_code: str) -> PublicStatus:
    code = normalize_receipt_code(raw_code)
    request = session.scalar(select(MediationRequest).where(MediationRequest.receipt_code == code)) if code else None
    if request is None:
        raise NotFound(
            _("No request has that receipt code. Check the code on your receipt; requests are deleted some days "
              "after they close."),
            field="receipt code",
        )
    return PublicStatus(
        receipt_code=request.receipt_code,
        status=request.status,
        label=request.status_label,
        # Pages show only the day of these (in the bench's time zone).
        received_on=request.created_at,
        updated_on=request.updated_at,
    )


def get_request(session: Session, request_id: int) -> MediationRequest:
    request = session.get(MediationRequest, request_id)
    if request is None:
        raise NotFound(_("That mediation request does not exist (it may have been purged)."))
    return request


def queue(session: Session, include_finished: bool = False) -> list[MediationRequest]:
    """The mediators' queue: urgent first, then oldest."""
    query = select(MediationRequest)
    if not include_finished:
        query = query.where(MediationRequest.status.not_in(FINISHED))
    urgency_order = {urgency: rank for rank, urgency in enumerate(reversed(URGENCIES))}
    requests = list(session.scalars(query.order_by(MediationRequest.created_at)))
    return sorted(requests, key=lambda r: (r.status in FINISHED, urgency_order[r.urgency]))


def assign(session: Session, now: datetime, request: MediationRequest, mediator: Member) -> None:
    if request.status in FINISHED:
        raise Invalid(_("This request is finished; reopen it before assigning it."))
    request.mediator = mediator
    request.taken_at = request.taken_at or now
    if request.status == NEW:
        request.status = ASSIGNED
    request.updated_at = now
    session.flush()


def change_status(session: Session, now: datetime, request: MediationRequest, status: str) -> None:
    if status not in STATUSES:
        raise Invalid(_("Unknown status %(status)s.", status=repr(status)), field="status")
    if status == request.status:
        return
    if status not in TRANSITIONS[request.status]:
        raise Invalid(
            _("A request that is %(current)s cannot become %(wanted)s.",
              current=STATUS_LABELS[request.status].lower(), wanted=STATUS_LABELS[status].lower()),
            field="status",
        )
    request.status = status
    if status == NEW:
        request.mediator = None  # back in the queue for anyone to take
    request.updated_at = now
    request.closed_at = now if status in FINISHED else None
    session.flush()


def add_note(session: Session, now: datetime, request: MediationRequest, author: Member, text: str) -> MediationNote:
    note = MediationNote(
        request=request,
        author=author,
        text=clean_text(text, field="note", max_length=MAX_NOTE, multiline=True),
        created_at=now,
    )
    request.updated_at = now
    session.add(note)
    session.flush()
    return note


def purge_closed(session: Session, now: datetime, retention_days: int, limit: int | None = None) -> int:
    """Delete requests that finished more than ``retention_days`` ago (at most ``limit``, oldest first); how many."""
    cutoff = now - timedelta(days=retention_days)
    ids = list(
        session.scalars(
            select(MediationRequest.id).where(
                MediationRequest.status.in_(FINISHED), MediationRequest.closed_at <= cutoff
            ).order_by(MediationRequest.closed_at).limit(limit)
        )
    )
    if ids:
        # Notes go first so the purge does not depend on the database
        # enforcing ON DELETE CASCADE.
        session.execute(delete(MediationNote).where(MediationNote.request_id.in_(ids)))
        session.execute(delete(MediationRequest).where(MediationRequest.id.in_(ids)))
    session.flush()
    return len(ids)

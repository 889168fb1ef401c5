"""Alerts: someone is in danger, and the right people must know within seconds.

An alert has a short code (``A7``) that a steward can type on a handheld
(``ACK A7``, ``CLR A7``). It goes out as an urgent broadcast with the bell,
so handhelds buzz even when the channel is muted. Nobody responding within
``ack_after`` brings a second broadcast; nobody after that, an escalation to
every steward on the channel, on shift or not.

A duress alert is silent: the steward's check-in looks normal on the air
and in the public log, and only dispatch hears about it, by direct message.

What goes on the air names the steward by handle (the channel is the
patrol's private one) and a place; never a legal name.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from server.domain import outbox, patrol, people, power_record
from server.domain import sealing
from server.domain.base import Base
from server.domain.sealing import SealedText
from server.domain.errors import Invalid, NotFound
from server.domain.people import Member
from server.domain.text import clean_text
from server.i18n import N_, Labels, speaking
from server.i18n import gettext as _

SOS = "sos"
PANIC = "panic"
DURESS = "duress"
OVERDUE = "overdue"
KINDS = Labels({SOS: "SOS", PANIC: N_("Panic button"), DURESS: N_("Silent alert (duress word)"),
                OVERDUE: N_("Overdue check-in")})

OPEN = "open"
RESPONDING = "responding"
RESOLVED = "resolved"

MAX_RESOLUTION = 500
DRILL_PREFIX = "DRILL "
# A repeated cry for help that names a new place is put on the air once per
# alert, the place cut short: a flood of spoofed places costs less airtime
# than the alert's own escalation (tests/benchmarks/bridge.py --only flood).
MAX_PLACE_UPDATES = 1
UPDATE_PLACE_LIMIT = 30
MAX_PLACES_HEARD = 8


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=OPEN, index=True)
    raised_at: Mapped[datetime]
    # The person the alert is about (the steward who pressed SOS, who is overdue).
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # Who raised it on the web, when not the person themselves.
    raised_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    place: Mapped[str | None] = mapped_column(String(patrol.MAX_PLACE))
    # How it started: "panic button", "last check-in 21:40Z", "drill".
    detail: Mapped[str | None] = mapped_column(String(120))
    source: Mapped[str] = mapped_column(String(8))
    silent: Mapped[bool] = mapped_column(Boolean, default=False)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    broadcasts: Mapped[int] = mapped_column(Integer, default=0)
    last_broadcast_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    resolution: Mapped[str | None] = mapped_column(SealedText(sealing.LOG))
    # False when the cry for help came from a registered node by channel
    # traffic, which anyone holding the channel key can forge: acted on all
    # the same, and marked so on the air and on the host pages.
    verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # The same sender raising the same kind again adds to this alert instead
    # of opening another (a flood buries nobody); other places they named.
    repeats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_repeat_at: Mapped[datetime | None]
    places_heard: Mapped[str | None] = mapped_column(Text)
    updates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    member: Mapped[Member | None] = relationship(foreign_keys=[member_id])
    raised_by: Mapped[Member | None] = relationship(foreign_keys=[raised_by_id])
    resolved_by: Mapped[Member | None] = relationship(foreign_keys=[resolved_by_id])
    responses: Mapped[list[AlertResponse]] = relationship(
        back_populates="alert", cascade="all, delete-orphan", order_by="AlertResponse.at"
    )

    @property
    def is_open(self) -> bool:
        return self.status != RESOLVED

    @property
    def kind_label(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def who(self) -> str:
        return self.member.handle if self.member else _("the hub")


class AlertResponse(Base):
    """Someone said they are on their way (``ACK A7`` or the web)."""

    __tablename__ = "alert_response"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    at: Mapped[datetime]
    via: Mapped[str] = mapped_column(String(8))

    alert: Mapped[Alert] = relationship(back_populates="responses")
    member: Mapped[Member | None] = relationship()


# -- codes ----------------------------------------------------------------------


def next_code(session: Session, model: type, prefix: str, still_open) -> str:  # noqa: ANN001  (a SQL clause)
    """A short code not in use by anything still open: ``A1``..``A99`` in turn, then round again.

    Short because a steward types it on a handheld's thumb wheel; unique
    among open items because that is all ``ACK A7`` needs to refer to.
    """
    taken = set(session.scalars(select(model.code).where(still_open)))
    last = session.scalar(select(model.id).order_by(model.id.desc()).limit(1)) or 0
    for step in range(99):
        code = f"{prefix}{(last + step) % 99 + 1}"
        if code not in taken:
            return code
    # A night with 99 open at once (mass arrests) must not refuse the 100th
    # witness: a longer code is better than a lost report.
    for number in range(100, 1000):
        if f"{prefix}{number}" not in taken:
            return f"{prefix}{number}"
    raise Invalid(_("%(n)d are open at once with code %(prefix)s; close some before opening more.",
                    n=len(taken), prefix=prefix))


def normalize_code(raw: str | None) -> str:
    return "".join(ch for ch in (raw or "").upper() if ch.isalnum())


# -- raising -----------------------------------------------------------------------


def _place(session: Session, member: Member | None, where: str | None) -> str | None:
    where = clean_text(where, field="place", max_length=patrol.MAX_PLACE, required=False) or None
    if where is None and member is not None:
        shift = patrol.current_shift(session, member)
        where = shift.place if shift else None
    return where


def dispatch_nodes(session: Session, now: datetime) -> list[int]:
    """Radios of everyone holding the dispatch role now."""
    members = session.scalars(select(Member).where(Member.node_num.is_not(None)).order_by(Member.id))
    return [m.node_num for m in members if people.has_role(session, m, people.DISPATCH, now)]


def raise_alert(session: Session, now: datetime, kind: str, member: Member | None, where: str | None,
                source: str, *, raised_by: Member | None = None, drill: bool = False,
                how: str | None = None, verified: bool = True) -> Alert:
    """Log the alert privately and put it on the air: urgent, with the bell (or, for duress, to dispatch only).

    One person has at most one open alert of a kind: raising it again adds
    to the open one (``add_to``) instead of opening another, so a flood of
    SOS from one node (a steward pressing again and again, or a stranger
    forging their id) is one alert on the air, not a hundred.
    """
    if kind not in KINDS:
        raise Invalid(_("Unknown kind of alert."), field="kind")
    if member is not None and not drill and (open_one := _open_of_kind(session, member, kind)) is not None:
        return add_to(session, now, open_one, where, source, verified=verified, how=how)
    alert = Alert(code=next_code(session, Alert, "A", Alert.status != RESOLVED), kind=kind, status=OPEN, raised_at=now, member=member,
                  raised_by=raised_by, place=_place(session, member, where), detail=how, source=source,
                  silent=kind == DURESS, drill=drill, broadcasts=0, verified=verified, repeats=0, updates=0)
    session.add(alert)
    session.flush()
    log_kind = DURESS if kind == DURESS else (OVERDUE if kind == OVERDUE else SOS)
    note = f"{alert.code}" + (f" ({how})" if how else "") + ("" if verified else ", unverified sender")
    if kind == DURESS and (words := _withhold_duress_check_in(session, now, member)):
        if sealing.is_sealed(words):
            # Sealed with the check-in, and never opened here: the words join the note as the sealed
            # part they are, after the code sealed in a part of its own (a reader sees both lines).
            note = sealing.Sealed(f"{sealing.seal(session, sealing.LOG, f'{note}, check-in said:')}"
                                  f"{sealing.SEPARATOR}{words}")
        else:
            note += f", check-in said: {words}"
    patrol.log_entry(session, now, log_kind, member, source, place=alert.place, note=note, public=False,
                     drill=drill)
    _announce(session, now, alert)
    return alert


def _open_of_kind(session: Session, member: Member, kind: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(Alert.member_id == member.id, Alert.kind == kind, Alert.status != RESOLVED,
                            Alert.drill.is_(False)).order_by(Alert.id).limit(1)
    )


def add_to(session: Session, now: datetime, alert: Alert, where: str | None, source: str, *, verified: bool,
           how: str | None = None) -> Alert:
    """The same person raised the same alert again: count it, note a new place, and go on the air only if it helps.

    A proven repeat of an unverified alert confirms it (one broadcast saying
    so) and its place wins. An unproven one never overwrites the place
    responders are heading to (it may be a stranger's); a new place it names
    goes on the air as "also reported at", at most ``MAX_PLACE_UPDATES``
    times per alert. Everything else only counts.
    """
    alert.repeats += 1
    alert.last_repeat_at = now
    place = clean_text(where, field="place", max_length=patrol.MAX_PLACE, required=False) or None
    heard = alert.places_heard.split("\n") if alert.places_heard else []
    confirmed = verified and not alert.verified
    new_place = place is not None and place != alert.place and place not in heard
    if confirmed:
        alert.verified = True
        if place and place != alert.place:
            if alert.place:
                heard.append(alert.place)
            alert.place = place
    elif new_place:
        heard.append(place)
    alert.places_heard = "\n".join(heard[-MAX_PLACES_HEARD:]) or None
    if not (confirmed or new_place):
        session.flush()
        return alert
    proof = "" if verified else ", unverified"
    note = f"{alert.code} again{proof}" + (f" ({how})" if how else "") + (f", at {place}" if place else "")
    log_kind = DURESS if alert.silent else (OVERDUE if alert.kind == OVERDUE else SOS)
    patrol.log_entry(session, now, log_kind, alert.member, source, place=place or alert.place, note=note,
                     public=False, drill=alert.drill)
    if alert.silent:
        session.flush()
        return alert
    if confirmed:
        _queue_update(session, now, alert, confirmed_text(alert), "confirmed")
    elif alert.updates < MAX_PLACE_UPDATES:
        _queue_update(session, now, alert, also_at_text(alert, place), f"place{alert.updates}")
    session.flush()
    return alert


def _queue_update(session: Session, now: datetime, alert: Alert, text: str, key: str) -> None:
    # Behind every alert's first notice (turn 0), so a flood of updates never delays another steward's SOS.
    alert.updates += 1
    outbox.queue_message(session, now, text, priority=outbox.URGENT, bell=True, turn=alert.updates,
                         dedupe_key=f"alert:{alert.id}:{key}")


def _withhold_duress_check_in(session: Session, now: datetime, member: Member | None) -> str | None:
    """Take the words off the check-in that carried the duress word; returns them.

    The check-in was logged a moment ago (same ``now``) like any other, and
    stays: on the air and on the public log it must look normal. But the
    full log and the live stream show its note to patrol captains too, and
    "all quiet, bluebird" gives the silent alert away to anyone who knows
    the word. So the note moves to the alert's own log line, the kind only
    host and dispatch see (patrol.RESTRICTED_KINDS).
    """
    if member is None:
        return None
    check_in = session.scalar(
        select(patrol.LogEntry)
        .where(patrol.LogEntry.member_id == member.id, patrol.LogEntry.kind == patrol.CHECK_IN,
               patrol.LogEntry.at == now)
        .order_by(patrol.LogEntry.id.desc()).limit(1)
    )
    if check_in is None or not check_in.note:
        return None
    words, check_in.note = check_in.note, None
    return words


def raise_sos(session: Session, now: datetime, member: Member | None, where: str | None, source: str,
              *, how: str | None = None, raised_by: Member | None = None, drill: bool = False,
              verified: bool = True) -> Alert:
    kind = PANIC if how in ("panic button", "detection sensor") else SOS
    return raise_alert(session, now, kind, member, where, source, raised_by=raised_by, drill=drill, how=how,
                       verified=verified)


def _announce(session: Session, now: datetime, alert: Alert, stage: int = 0) -> None:
    """Stage 0: the first notice; 1: again, nobody responded; 2: escalation to everyone."""
    text = alert_text(alert, stage)
    key = f"alert:{alert.id}:{stage}"
    # A repeat notice waits behind every alert's first one (``turn``): fair across alerts.
    if alert.silent:
        for node in dispatch_nodes(session, now):
            outbox.queue_message(session, now, text, destination=node, priority=outbox.URGENT,
                                 dedupe_key=f"{key}:{node}", bell=True, turn=stage)
    else:
        outbox.queue_message(session, now, text, priority=outbox.URGENT, dedupe_key=key, bell=True, turn=stage)
    alert.broadcasts = stage + 1
    alert.last_broadcast_at = now


def place_for_air(place: str | None, limit: int = 60) -> str | None:
    """A long place is shortened on the air (the hub's pages have it whole), so the message
    fits one packet with the bell; codes are never cut."""
    return place if not place or len(place) <= limit else place[: limit - 1] + "…"


def alert_text(alert: Alert, stage: int = 0) -> str:
    """What goes on the air: code, kind, handle, place; fits one packet with the bell.

    In the hub's language whoever raised it (a broadcast reaches everyone); the
    command words (SOS, ACK) and codes stay as typed on a handheld.
    """
    with speaking(None):
        drill = _drill() if alert.drill else ""
        place = place_for_air(alert.place)
        if alert.silent:
            if place:
                return _("%(drill)sSILENT %(code)s: %(who)s used the duress word, %(place)s. "
                         "Do not reply on the channel.", drill=drill, code=alert.code, who=alert.who, place=place)
            return _("%(drill)sSILENT %(code)s: %(who)s used the duress word. Do not reply on the channel.",
                     drill=drill, code=alert.code, who=alert.who)
        if alert.kind == OVERDUE:
            if place:
                head = _("%(drill)sOVERDUE %(code)s: %(who)s, %(place)s, %(detail)s", drill=drill,
                         code=alert.code, who=alert.who, place=place, detail=alert.detail)
            else:
                head = _("%(drill)sOVERDUE %(code)s: %(who)s, %(detail)s", drill=drill, code=alert.code,
                         who=alert.who, detail=alert.detail)
        else:
            head = _head(alert)
        if stage == 0:
            return _("%(head)s. ACK %(code)s to respond.", head=head, code=alert.code)
        if stage == 1:
            return _("%(head)s. No responder yet. ACK %(code)s.", head=head, code=alert.code)
        return _("%(head)s. ALL STEWARDS, on shift or not: ACK %(code)s.", head=head, code=alert.code)


def confirmed_text(alert: Alert) -> str:
    """On the air when an unverified SOS is confirmed from the steward's own radio."""
    with speaking(None):
        return _("%(head)s. Confirmed from their own radio. ACK %(code)s.", head=_head(alert), code=alert.code)


def also_at_text(alert: Alert, place: str | None) -> str:
    """On the air when a repeated SOS names a new place (cut short: it may be a stranger's)."""
    with speaking(None):
        return _("%(head)s also at %(place)s. ACK %(code)s", head=_head(alert, with_place=False),
                 place=place_for_air(place, UPDATE_PLACE_LIMIT), code=alert.code)


def resolved_text(alert: Alert) -> str:
    with speaking(None):
        return _("%(drill)s%(code)s resolved. Thank you.", drill=_drill() if alert.drill else "", code=alert.code)


def _drill() -> str:
    return _("DRILL ")


def _head(alert: Alert, *, with_place: bool = True) -> str:
    """``SOS A7 (unverified): Kestrel, Market``: the unverified mark tells responders it may be forged."""
    drill = _drill() if alert.drill else ""
    shown = place_for_air(alert.place) if with_place else None
    values = {"drill": drill, "code": alert.code, "who": alert.who, "place": shown}
    if alert.verified:
        return _("%(drill)sSOS %(code)s: %(who)s, %(place)s", **values) if shown else \
            _("%(drill)sSOS %(code)s: %(who)s", **values)
    return _("%(drill)sSOS %(code)s (unverified): %(who)s, %(place)s", **values) if shown else \
        _("%(drill)sSOS %(code)s (unverified): %(who)s", **values)


# -- responding and resolving ----------------------------------------------------------


def find_open(session: Session, code: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(Alert.code == normalize_code(code), Alert.status != RESOLVED).order_by(Alert.id.desc())
    )


def open_for_radio(session: Session, code: str) -> Alert:
    """The open alert ``ACK``/``CLR`` over the radio may touch.

    A silent (duress) alert is never acknowledged, cleared or even admitted
    to over the air: its code gets the very answer a made-up code gets.
    """
    alert = find_open(session, code)
    if alert is None or alert.silent:
        raise NotFound(_("No open alert %(code)s. Send STATUS for open ones.", code=normalize_code(code) or "?"))
    return alert


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(_("That alert does not exist."))
    return alert


def _open_by_code(session: Session, code: str) -> Alert:
    alert = find_open(session, code)
    if alert is None:
        shown = normalize_code(code) or "?"
        raise NotFound(_("No open alert %(code)s. Send STATUS for open ones.", code=shown))
    return alert


def acknowledge(session: Session, now: datetime, alert: Alert | str, member: Member, via: str) -> Alert:
    """``member`` is responding. Saying so twice counts once."""
    alert = _open_by_code(session, alert) if isinstance(alert, str) else alert
    if not alert.is_open:
        raise Invalid(_("Alert %(code)s is already resolved.", code=alert.code))
    if not any(r.member_id == member.id for r in alert.responses):
        alert.responses.append(AlertResponse(member=member, at=now, via=via))
        # A silent alert's whole story stays in the kind only host and dispatch see.
        kind = DURESS if alert.silent else "alert_ack"
        patrol.log_entry(session, now, kind, member, via, note=f"responding to {alert.code}", public=False,
                         drill=alert.drill)
    alert.status = RESPONDING
    session.flush()
    return alert


def resolve(session: Session, now: datetime, alert: Alert | str, member: Member | None, via: str,
            note: str | None, *, note_required: bool = True) -> Alert:
    """Close the alert with what happened. On the web a note is required; ``CLR A7`` may say nothing more."""
    alert = _open_by_code(session, alert) if isinstance(alert, str) else alert
    if not alert.is_open:
        raise Invalid(_("Alert %(code)s is already resolved.", code=alert.code))
    note = clean_text(note, field="note", max_length=MAX_RESOLUTION, required=note_required,
                      multiline=True) or None
    alert.status = RESOLVED
    alert.resolved_at = now
    alert.resolved_by = member
    # Kept in words here: the column is sealed at the next flush, and what was sealed is never read back.
    resolution = note or f"cleared by {member.handle if member else 'the hub'} ({via})"
    alert.resolution = resolution
    _record_resolution(session, now, alert, member, via)
    patrol.log_entry(session, now, DURESS if alert.silent else "alert_clear", member, via,
                     note=f"{alert.code} resolved: {resolution}", public=False, drill=alert.drill)
    if not alert.silent:
        # Responders on their way need to hear it is over; one normal-priority broadcast.
        outbox.queue_message(session, now, resolved_text(alert), priority=outbox.NORMAL,
                             dedupe_key=f"alert:{alert.id}:resolved")
    session.flush()
    return alert


# Why an alert was resolved, as the record of power used says it: never the resolution note, which may describe people.
RESOLVED_VIA = {
    patrol.SOURCE_RADIO: "CLR from a radio; what happened is with the alert",
    patrol.SOURCE_WEB: "resolved on the alerts page; what happened is with the alert",
    patrol.SOURCE_CLI: "resolved at the Pi's terminal; what happened is with the alert",
    patrol.SOURCE_SYSTEM: "the steward it was about checked in",
}
RESOLVE_ROLES = (people.HOST, people.DISPATCH, people.CAPTAIN, people.STEWARD)


def _record_resolution(session: Session, now: datetime, alert: Alert, member: Member | None, via: str) -> None:
    # The hub stands an overdue alert down itself when the steward's own word arrives.
    actor = None if via == patrol.SOURCE_SYSTEM else member
    # A silent alert stays silent: the record names its code, never its kind.
    what = f"alert {alert.code}" + ("" if alert.silent else f" ({alert.kind_label})")
    if alert.drill:
        what, why = f"{what}, a drill", "the drill ended or was cleared"
    else:
        why = RESOLVED_VIA.get(via, "resolved; what happened is with the alert")
    power_record.record(session, now, actor=actor, role=power_record.acting_role(session, now, actor, RESOLVE_ROLES),
                        action="alert-resolved", subject=what, reason=why)


def escalate_due(session: Session, now: datetime, ack_after: timedelta) -> list[Alert]:
    """Alerts nobody has answered: broadcast again, then to everyone. Returns those that moved on."""
    moved = []
    for alert in session.scalars(select(Alert).where(Alert.status == OPEN, Alert.silent.is_(False))):
        if alert.broadcasts >= 3 or alert.last_broadcast_at is None:
            continue
        if now - alert.last_broadcast_at >= ack_after:
            stage = alert.broadcasts
            _announce(session, now, alert, stage)  # one message per alert, however often it was repeated
            if stage == 2:
                alert.escalated_at = now
                patrol.log_entry(session, now, "sos", alert.member, patrol.SOURCE_SYSTEM, place=alert.place,
                                 note=f"{alert.code} escalated to all stewards: no responder", public=False,
                                 drill=alert.drill)
            moved.append(alert)
    session.flush()
    return moved


def open_alerts(session: Session) -> list[Alert]:
    return list(session.scalars(
        select(Alert).where(Alert.status != RESOLVED)
        .options(joinedload(Alert.member), joinedload(Alert.responses).joinedload(AlertResponse.member))
        .order_by(Alert.raised_at.desc())
    ).unique())


def recent_alerts(session: Session, limit: int = 20) -> list[Alert]:
    return list(session.scalars(
        select(Alert).options(joinedload(Alert.member), joinedload(Alert.responses).joinedload(AlertResponse.member))
        .order_by(Alert.id.desc()).limit(limit)
    ).unique())


def open_codes_text(session: Session) -> str:
    """For STATUS over the radio: the open alerts' codes, shortest form."""
    open_ = [a for a in open_alerts(session) if not a.silent]
    if not open_:
        return ""
    with speaking(None):
        return _("Open: %(alerts)s", alerts=", ".join(f"{a.code} {a.who}" for a in open_[:5]))


def purge_resolved(session: Session, now: datetime, keep: timedelta, limit: int | None = None) -> int:
    """Resolved alerts are forgotten after ``keep``: they say who was in danger where (at most ``limit``)."""
    ids = list(session.scalars(select(Alert.id).where(Alert.status == RESOLVED, Alert.resolved_at <= now - keep)
                               .order_by(Alert.resolved_at).limit(limit)))
    # In two statements, not an ORM delete each: responses first, so the purge does not depend on the
    # database enforcing ON DELETE CASCADE; a shift or a drill pointing at one is set NULL by its foreign key.
    for chunk in (ids[start:start + 500] for start in range(0, len(ids), 500)):
        session.execute(delete(AlertResponse).where(AlertResponse.alert_id.in_(chunk)))
        session.execute(delete(Alert).where(Alert.id.in_(chunk)).execution_options(synchronize_session="fetch"))
    session.flush()
    return len(ids)

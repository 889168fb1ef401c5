"""What the bridge does with each thing it hears: where a radio check-in goes.

Every event is handled in its own transaction. A packet counts once, however
often the mesh delivers it (the heard-packet table survives restarts); an
unknown or lapsed sender is counted and never obeyed; the hub answers only
STATUS, HELP and errors, because the Meshtastic ACK already tells a steward
their message arrived, and airtime is scarce.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from radio_bridge.packets import Ack, PanicPacket, PositionPacket, TextPacket
from server.domain import alerts, cases, outbox, overdue, patrol, people, radio
from server.domain.errors import DomainError
from server.domain.people import Member, format_node_id
from server.domain.radio_commands import Command, Verb, help_text, parse_command
from server.domain.radio_text import fits_one_packet

log = logging.getLogger("radio_bridge.inbound")

MISSED_TEXT = "Hub restarted and may have missed your last message. If it mattered, send it again."
# Roles whose radios the hub obeys.
RADIO_ROLES = (people.STEWARD, people.CAPTAIN, people.DISPATCH, people.HOST)


@dataclass
class InboundSettings:
    error_reply_every: timedelta = timedelta(minutes=5)
    max_attempts: int = 3
    retry_backoff: timedelta = timedelta(seconds=30)
    legal_hotline: str = ""  # read out in every arrest broadcast
    duress_word: str = ""  # empty: no duress word


@dataclass
class Inbound:
    """Turns bridge events into domain calls; one instance per bridge process."""

    radio_node: Callable[[], int | None]
    settings: InboundSettings = field(default_factory=InboundSettings)
    # When each sender last got an error reply: at most one per few minutes,
    # so a steward fumbling the keys does not eat the channel's airtime.
    _last_error_reply: dict[int, datetime] = field(default_factory=dict)

    def handle_text(self, session: Session, now: datetime, packet: TextPacket) -> str:
        """Act on a text; returns what happened, for the bridge's log."""
        own = self.radio_node()
        if own is not None and packet.sender == own:
            return "own"
        member = self._new_from_steward(session, now, packet.sender, packet.packet_id)
        if not isinstance(member, Member):
            return member
        command = parse_command(packet.text)
        try:
            return self._act(session, now, member, command, packet.sender)
        except DomainError as refusal:
            self._error_reply(session, now, packet.sender, refusal.message)
            return "refused"

    def handle_position(self, session: Session, now: datetime, packet: PositionPacket) -> str:
        member = self._new_from_steward(session, now, packet.sender, packet.packet_id)
        if not isinstance(member, Member):
            return member
        if not (-90 <= packet.latitude <= 90 and -180 <= packet.longitude <= 180):
            return "ignored"
        radio.record_position(session, now, member, packet.latitude, packet.longitude)
        return "position"

    def handle_panic(self, session: Session, now: datetime, packet: PanicPacket) -> str:
        """A hardware panic button or detection sensor on a steward's node raises an SOS."""
        member = self._new_from_steward(session, now, packet.sender, packet.packet_id)
        if not isinstance(member, Member):
            return member
        how = "panic button" if packet.kind == "alert" else "detection sensor"
        alerts.raise_sos(session, now, member, None, patrol.SOURCE_RADIO, how=how)
        return "sos"

    def handle_ack(self, session: Session, now: datetime, ack: Ack) -> str:
        message = outbox.find_by_packet(session, ack.packet_id)
        if message is None:
            return "stray ack"
        if ack.is_ack:
            # From our own radio it means a neighbour was heard repeating it.
            implicit = ack.from_node == self.radio_node() and ack.from_node != message.destination
            outbox.record_ack(session, now, ack.packet_id, implicit=implicit)
            return "implicit ack" if implicit else "ack"
        outbox.record_nak(session, now, ack.packet_id, ack.reason,
                          max_attempts=self.settings.max_attempts, backoff=self.settings.retry_backoff)
        return f"nak {ack.reason}"

    def ask_to_resend(self, session: Session, now: datetime, nodes: list[int]) -> list[str]:
        """Tell stewards the radio heard while no bridge was reading that their message may be lost.

        Their handheld showed it as delivered (the hub's radio took it), but a
        serial radio hands packets to a bridge that is down to no one. Urgent,
        with the bell: it may have been an SOS. Returns the stewards' handles.
        """
        asked = []
        for node in nodes:
            member = people.find_member_by_node(session, node)
            if member is None or not people.active_roles(session, member, now) & set(RADIO_ROLES):
                continue
            outbox.queue_message(session, now, MISSED_TEXT, destination=node, priority=outbox.URGENT, bell=True,
                                 dedupe_key=f"missed:{node}:{now:%Y%m%d%H%M}")
            asked.append(member.handle)
        return asked

    # -- helpers ---------------------------------------------------------------

    def _new_from_steward(self, session: Session, now: datetime, sender: int, packet_id: int) -> Member | str:
        """The member to obey for a packet heard for the first time, or why not ("duplicate", "ignored")."""
        if not radio.first_time_heard(session, now, sender, packet_id):
            return "duplicate"
        return self._obeyed_sender(session, now, sender) or "ignored"

    def _obeyed_sender(self, session: Session, now: datetime, sender: int) -> Member | None:
        member = people.find_member_by_node(session, sender)
        if member is None:
            radio.note_unknown_sender(session, now, sender)
            log.warning("ignored a message from unregistered node %s", format_node_id(sender))
            return None
        if not people.active_roles(session, member, now) & set(RADIO_ROLES):
            radio.note_unknown_sender(session, now, sender)
            log.warning("ignored a message from %s: no active role", member.handle)
            self._error_reply(session, now, sender, "Your role at the bench has lapsed; ask the host to renew it.")
            return None
        return member

    def _act(self, session: Session, now: datetime, member: Member, command: Command, sender: int) -> str:
        verb = command.verb
        if verb is Verb.ON:
            patrol.start_shift(session, now, member, command.area or None, patrol.SOURCE_RADIO)
        elif verb is Verb.OFF:
            patrol.end_shift(session, now, member, patrol.SOURCE_RADIO)
        elif verb is Verb.CHECK_IN:
            patrol.record_check_in(session, now, member, patrol.SOURCE_RADIO, note=command.note or None)
            if overdue.has_duress_word(command.note, self.settings.duress_word):
                # Nothing on the channel and nothing public: only dispatch hears, by direct message.
                alerts.raise_alert(session, now, alerts.DURESS, member, None, patrol.SOURCE_RADIO)
                return "check_in"
        elif verb is Verb.INCIDENT:
            patrol.record_incident(session, now, member, patrol.SOURCE_RADIO, command.what,
                                   place=command.where or None)
        elif verb is Verb.SOS:
            alerts.raise_sos(session, now, member, command.where or None, patrol.SOURCE_RADIO)
        elif verb is Verb.ARREST:
            cases.open_case(session, now, place=command.where or None, arrested=command.count or 1,
                            source=patrol.SOURCE_RADIO, reported_by=member, description=command.note or None,
                            hotline=self.settings.legal_hotline, place_required=False)
        elif verb is Verb.ACK:
            alerts.acknowledge(session, now, command.code, member, patrol.SOURCE_RADIO)
        elif verb is Verb.CLEAR:
            alerts.resolve(session, now, command.code, member, patrol.SOURCE_RADIO, command.note or None,
                           note_required=False)
        elif verb is Verb.STATUS:
            self._reply(session, now, sender, status_text(session), key="status")
        elif verb is Verb.HELP:
            self._reply(session, now, sender, help_text(command.topic), key="help")
        else:
            self._error_reply(session, now, sender, command.reason or "Unknown command. Send HELP.")
            return "unknown"
        return verb.name.lower()

    def _reply(self, session: Session, now: datetime, sender: int, text: str, key: str) -> None:
        outbox.queue_message(session, now, text, destination=sender, priority=outbox.NORMAL,
                             dedupe_key=f"{key}:{sender}:{now:%Y%m%d%H%M}")

    def _error_reply(self, session: Session, now: datetime, sender: int, reason: str) -> None:
        last = self._last_error_reply.get(sender)
        if last is not None and now - last < self.settings.error_reply_every:
            return
        self._last_error_reply[sender] = now
        text = reason if fits_one_packet(reason) else "Unknown command. Send HELP."
        self._reply(session, now, sender, text, key="error")


def status_text(session: Session) -> str:
    """The STATUS answer: who is out, in one packet."""
    shifts = patrol.on_patrol(session)
    open_alerts = alerts.open_codes_text(session)
    if not shifts:
        text = "No one on shift."
    else:
        handles = ", ".join(sorted({shift.member.handle for shift in shifts}, key=str.lower))
        text = f"On shift {len(shifts)}: {handles}"
        if not fits_one_packet(text):
            text = f"On shift: {len(shifts)} stewards."
    if open_alerts and fits_one_packet(f"{text} {open_alerts}"):
        text = f"{text} {open_alerts}"
    elif open_alerts:
        text = f"{text} Alerts open: {open_alerts.count(',') + 1}."
    return text

"""What the bridge does with each thing it hears: where a radio check-in goes.

Every event is handled in its own transaction. A packet counts once, however
often the mesh delivers it (the heard-packet table survives restarts, for
weeks, so a recorded packet played back later is still recognised); an
unknown or lapsed sender is counted and never obeyed; the hub answers only
STATUS, HELP and errors, because the Meshtastic ACK already tells a steward
their message arrived, and airtime is scarce.

Whoever holds the patrol channel key can write any ``from``, so a sender is
trusted only as far as the packet proves (server/domain/radio_trust.py):

- verified (a PKI direct message to the hub with the member's pinned key):
  anything the member's roles allow;
- unverified (channel traffic from a registered node): cries for help (SOS,
  the panic button, ARREST, the duress word) are acted on and marked
  unverified, since a missed cry costs more than a false one; ON, CI, INC
  and HELP are logged; nothing that closes, cancels, acknowledges or reveals
  state (ACK, CLR, OFF, TAKE, DONE, STATUS's codes and names): refused, and the hosts
  see the attempt; SAFE is answered, since it says only what the public
  allies page says (its replies are routine traffic, one per sender a
  minute, so a flood of them never reaches the urgent reserve);
- via MQTT, on another channel, or addressed to another node: never obeyed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from radio_bridge.packets import BROADCAST, Ack, NodeInfoPacket, PanicPacket, PositionPacket, Proof, TextPacket
from server.domain import alerts, allies, cases, outbox, overdue, patrol, people, radio, radio_trust
from server.domain import tasks
from server.domain import ledger
from server.domain.errors import DomainError
from server.domain.people import Member
from server.domain.radio_commands import Command, Verb, help_text, parse_command
from server.domain.radio_text import fits_one_packet
from server.i18n import N_
from server.i18n import gettext as _

log = logging.getLogger("radio_bridge.inbound")

# On the air in the hub's language (the bridge speaks nothing else): translated where sent.
MISSED_TEXT = N_("Hub restarted and may have missed your last message. If it mattered, send it again.")
NEEDS_PROOF_TEXT = N_("%(verb)s counts only as a direct message from your own radio to the hub "
                      "(its key confirmed by a host).")
LAPSED_TEXT = N_("Your role at the bench has lapsed; ask the host to renew it.")
UNKNOWN_TEXT = N_("Unknown command. Send HELP.")
# Commands that close, cancel, acknowledge or end something: a verified sender only.
NEEDS_PROOF = {Verb.ACK, Verb.CLEAR, Verb.OFF}
# The ledger (issue 16): a forged PAY would spend another's credits, a forged GOT accept them.
NEEDS_PROOF |= {Verb.PAY, Verb.GOT}
# Taking and closing a task (issue 16): a forged TAKE would hide work from the map, a forged DONE close it.
NEEDS_PROOF |= {Verb.TAKE, Verb.DONE}
# How often one node's unproven attempts are written to the hosts' record (a flood is one line a minute).
RECORD_EVERY = timedelta(minutes=1)
# Roles whose radios the hub obeys.
RADIO_ROLES = (people.STEWARD, people.CAPTAIN, people.DISPATCH, people.HOST)


@dataclass
class InboundSettings:
    error_reply_every: timedelta = timedelta(minutes=5)
    max_attempts: int = 3
    retry_backoff: timedelta = timedelta(seconds=30)
    legal_hotline: str = ""  # read out in every arrest broadcast
    duress_word: str = ""  # empty: no duress word
    timezone: str = ""  # the bench's (SAFEBENCH_TIMEZONE), for the allies' hours; empty: the Pi's own


@dataclass
class Inbound:
    """Turns bridge events into domain calls; one instance per bridge process."""

    radio_node: Callable[[], int | None]
    settings: InboundSettings = field(default_factory=InboundSettings)
    # When each sender last got an error reply: at most one per few minutes,
    # so a steward fumbling the keys does not eat the channel's airtime.
    _last_error_reply: dict[int, datetime] = field(default_factory=dict)
    _last_recorded: dict[tuple[int, str], datetime] = field(default_factory=dict)

    def handle_text(self, session: Session, now: datetime, packet: TextPacket) -> str:
        """Act on a text; returns what happened, for the bridge's log."""
        own = self.radio_node()
        if own is not None and packet.sender == own:
            return "own"
        member = self._new_from_steward(session, now, packet.sender, packet.packet_id, packet.proof)
        if not isinstance(member, Member):
            return member
        command = parse_command(packet.text)
        verified = self._verified(member, packet.proof)
        try:
            return self._act(session, now, member, command, packet.sender, verified)
        except DomainError as refusal:
            self._error_reply(session, now, packet.sender, refusal.message)
            return "refused"

    def handle_position(self, session: Session, now: datetime, packet: PositionPacket) -> str:
        member = self._new_from_steward(session, now, packet.sender, packet.packet_id, packet.proof)
        if not isinstance(member, Member):
            return member
        if not (-90 <= packet.latitude <= 90 and -180 <= packet.longitude <= 180):
            return "ignored"
        radio.record_position(session, now, member, packet.latitude, packet.longitude)
        return "position"

    def handle_panic(self, session: Session, now: datetime, packet: PanicPacket) -> str:
        """A hardware panic button or detection sensor on a steward's node raises an SOS."""
        member = self._new_from_steward(session, now, packet.sender, packet.packet_id, packet.proof)
        if not isinstance(member, Member):
            return member
        how = "panic button" if packet.kind == "alert" else "detection sensor"
        verified = self._verified(member, packet.proof)
        self._note_unverified_alarm(session, now, member, verified, how)
        alerts.raise_sos(session, now, member, None, patrol.SOURCE_RADIO, how=how, verified=verified)
        return "sos"

    def handle_node_info(self, session: Session, now: datetime, packet: NodeInfoPacket) -> str:
        """A registered node announced a key: offered to the hosts, never trusted by itself."""
        if packet.public_key is None or self._foreign(packet.proof):
            return "ignored"
        member = people.find_member_by_node(session, packet.sender)
        if member is None:
            return "ignored"
        # A stranger can announce a new key under a steward's node id as often as they like: the hosts
        # hear of one a minute at most (it is never trusted before a host confirms it anyway).
        last = self._last_recorded.get((packet.sender, radio_trust.KEY_HEARD))
        if last is not None and now - last < RECORD_EVERY:
            return "key offered lately"
        if not radio_trust.note_heard_key(session, now, member, packet.public_key):
            return "key known"
        self._last_recorded[(packet.sender, radio_trust.KEY_HEARD)] = now
        return "key offered"

    def note_node_keys(self, session: Session, now: datetime, keys: dict[int, bytes | str]) -> int:
        """Keys in the radio's own node list (read at every connect) for registered nodes; returns how many are new."""
        new = 0
        for node, key in keys.items():
            member = people.find_member_by_node(session, node)
            if member is not None and radio_trust.note_heard_key(session, now, member, key):
                new += 1
        return new

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
            outbox.queue_message(session, now, _(MISSED_TEXT), destination=node, priority=outbox.URGENT, bell=True,
                                 dedupe_key=f"missed:{node}:{now:%Y%m%d%H%M}")
            asked.append(member.handle)
        return asked

    # -- helpers ---------------------------------------------------------------

    def _new_from_steward(self, session: Session, now: datetime, sender: int, packet_id: int,
                          proof: Proof) -> Member | str:
        """The member to obey for a packet heard for the first time, or why not ("duplicate", "foreign", "ignored")."""
        if not radio.first_time_heard(session, now, sender, packet_id):
            return "duplicate"
        if self._foreign(proof):
            if (member := people.find_member_by_node(session, sender)) is not None:
                self._record(session, now, radio_trust.FOREIGN, member, sender, _why_foreign(proof, self.radio_node()))
            return "foreign"
        return self._obeyed_sender(session, now, sender) or "ignored"

    def _foreign(self, proof: Proof) -> bool:
        """Not patrol traffic for this hub: crossed the internet, another channel, or meant for another node."""
        own = self.radio_node()
        if proof.via_mqtt:
            return True
        if proof.to != BROADCAST and proof.to != own:
            return True
        # A PKI direct message carries no channel; everything else must be on the patrol channel (index 0).
        return not proof.pki and proof.channel != 0

    def _verified(self, member: Member, proof: Proof) -> bool:
        own = self.radio_node()
        return radio_trust.is_verified(member, pki=proof.pki, public_key=proof.public_key,
                                       to_hub=own is not None and proof.to == own)

    def _record(self, session: Session, now: datetime, kind: str, member: Member, node: int, detail: str) -> None:
        """Into the hosts' record, at most once a minute per node and kind: a flood is one line, not a thousand."""
        last = self._last_recorded.get((node, kind))
        if last is not None and now - last < RECORD_EVERY:
            return
        self._last_recorded[(node, kind)] = now
        radio_trust.record(session, now, kind, node_num=node, member=member, detail=detail)

    def _note_unverified_alarm(self, session: Session, now: datetime, member: Member, verified: bool,
                               what: str) -> None:
        if not verified:
            self._record(session, now, radio_trust.UNVERIFIED_ALARM, member, member.node_num or 0,
                         f"{what} from {member.handle}'s node by channel traffic: acted on, marked unverified")

    def _obeyed_sender(self, session: Session, now: datetime, sender: int) -> Member | None:
        member = people.find_member_by_node(session, sender)
        if member is None:
            radio.note_unknown_sender(session, now, sender)
            # Without its node id: the process log outlives the radio page's list of unknown nodes, which has it.
            log.warning("ignored a message from unregistered node (listed on the radio page)")
            return None
        if not people.active_roles(session, member, now) & set(RADIO_ROLES):
            radio.note_unknown_sender(session, now, sender)
            log.warning("ignored a message from a member with no active role (the stewards page says who)")
            self._error_reply(session, now, sender, _(LAPSED_TEXT))
            return None
        return member

    def _act(self, session: Session, now: datetime, member: Member, command: Command, sender: int,
             verified: bool) -> str:
        verb = command.verb
        if verb in NEEDS_PROOF and not verified:
            what = f"{verb.value} {command.code}".strip()
            self._record(session, now, radio_trust.REFUSED, member, sender,
                         f"{what} claimed to be from {member.handle}: refused, no proof it came from their radio")
            # The same answer whatever the code: an unproven sender learns nothing about what is open.
            self._error_reply(session, now, sender, _(NEEDS_PROOF_TEXT, verb=verb.value))
            return "unverified"
        if verb is Verb.ON:
            patrol.start_shift(session, now, member, command.area or None, patrol.SOURCE_RADIO, proven=verified)
        elif verb is Verb.OFF:
            patrol.end_shift(session, now, member, patrol.SOURCE_RADIO)
        elif verb is Verb.CHECK_IN:
            patrol.record_check_in(session, now, member, patrol.SOURCE_RADIO, note=command.note or None,
                                   proven=verified)
            if overdue.has_duress_word(command.note, self.settings.duress_word):
                # Nothing on the channel and nothing public: only dispatch hears, by direct message.
                alerts.raise_alert(session, now, alerts.DURESS, member, None, patrol.SOURCE_RADIO, verified=verified)
                return "check_in"
        elif verb is Verb.INCIDENT:
            patrol.record_incident(session, now, member, patrol.SOURCE_RADIO, command.what,
                                   place=command.where or None, proven=verified)
        elif verb is Verb.SOS:
            self._note_unverified_alarm(session, now, member, verified, "SOS")
            alerts.raise_sos(session, now, member, command.where or None, patrol.SOURCE_RADIO, verified=verified)
        elif verb is Verb.ARREST:
            self._note_unverified_alarm(session, now, member, verified, "ARREST")
            cases.report_from_radio(session, now, member, where=command.where, count=command.count,
                                    note=command.note, verified=verified, hotline=self.settings.legal_hotline)
        elif verb is Verb.ACK and command.code.startswith("C"):
            # A dispatcher, captain or host confirms a neighbour's arrest report: it goes to every handheld.
            # The roles are checked before the code, so nobody else learns which cases are open.
            cases.confirm_report(session, now, command.code, member, patrol.SOURCE_RADIO,
                                 hotline=self.settings.legal_hotline)
        elif verb is Verb.ACK:
            alerts.acknowledge(session, now, alerts.open_for_radio(session, command.code), member,
                               patrol.SOURCE_RADIO)
        elif verb is Verb.CLEAR:
            alerts.resolve(session, now, alerts.open_for_radio(session, command.code), member, patrol.SOURCE_RADIO,
                           command.note or None, note_required=False)
        elif verb is Verb.STATUS:
            self._reply(session, now, sender, status_text(session) if verified else counts_text(session),
                        key="status")
        elif verb is Verb.HELP:
            self._reply(session, now, sender, help_text(command.topic), key="help")
        elif verb is Verb.PAY:
            reply = ledger.pay_by_radio(session, now, member, command.what, command.count, command.note)
            self._reply(session, now, sender, reply, key=f"pay-{reply.split(':')[0]}")
        elif verb is Verb.GOT:
            self._reply(session, now, sender, ledger.confirm_by_radio(session, now, member, command.code),
                        key=f"got-{command.code}")
        elif verb is Verb.TAKE:
            task = tasks.take(session, now, command.code, member, patrol.SOURCE_RADIO)
            self._reply(session, now, sender, tasks.taken_text(task), key=f"take-{task.code}")
        elif verb is Verb.DONE:
            task = tasks.finish(session, now, command.code, member, command.note or None, patrol.SOURCE_RADIO)
            self._reply(session, now, sender, tasks.done_text(task), key=f"done-{task.code}")
        elif verb is Verb.SAFE:
            # Unverified senders too: the answer is what the public allies page shows. NORMAL priority and one
            # reply per sender a minute (the dedupe key), as STATUS and HELP: never the urgent reserve.
            shift = patrol.current_shift(session, member)
            here = shift.area.name if shift is not None and shift.area is not None else None
            self._reply(session, now, sender, allies.safe_answer(
                session, now, allies.zone_of(self.settings.timezone), command.area, here=here), key="safe")
        else:
            self._error_reply(session, now, sender, command.reason or _(UNKNOWN_TEXT))
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
        text = reason if fits_one_packet(reason) else _(UNKNOWN_TEXT)
        self._reply(session, now, sender, text, key="error")


def _why_foreign(proof: Proof, own: int | None) -> str:
    if proof.via_mqtt:
        return "a packet that crossed the internet (MQTT): ignored"
    if proof.to != BROADCAST and proof.to != own:
        return "a packet addressed to another node: ignored"
    return f"a packet on channel {proof.channel}, not the patrol channel: ignored"


def counts_text(session: Session) -> str:
    """STATUS for a sender the hub cannot verify: how many, never who or which codes."""
    on_shift = len(patrol.on_patrol(session))
    open_alerts = sum(1 for alert in alerts.open_alerts(session) if not alert.silent)
    return counts_line(on_shift, open_alerts)


def counts_line(on_shift: int, open_alerts: int) -> str:
    return _("On shift: %(on_shift)d. Alerts open: %(open_alerts)d. "
             "For names and codes send STATUS as a direct message to the hub.",
             on_shift=on_shift, open_alerts=open_alerts)


def status_text(session: Session) -> str:
    """The STATUS answer: who is out, in one packet."""
    shifts = patrol.on_patrol(session)
    open_alerts = alerts.open_codes_text(session)
    if not shifts:
        text = _("No one on shift.")
    else:
        handles = ", ".join(sorted({shift.member.handle for shift in shifts}, key=str.lower))
        text = _("On shift %(n)d: %(handles)s", n=len(shifts), handles=handles)
        if not fits_one_packet(text):
            text = _("On shift: %(n)d stewards.", n=len(shifts))
    if open_alerts and fits_one_packet(f"{text} {open_alerts}"):
        text = f"{text} {open_alerts}"  # two sentences side by side: each is whole in every language
    elif open_alerts:
        text = _("%(status)s Alerts open: %(n)d.", status=text, n=open_alerts.count(",") + 1)
    return text

"""Draining the outbox onto the air: urgent first, paced, within the airtime budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from radio_bridge.airtime import (
    AirtimeLedger,
    Priority,
    duty_cycle_budget,
    text_airtime,
)
from radio_bridge.mesh import RadioBusy, RadioLink, RadioUnavailable
from server.domain import outbox

log = logging.getLogger("radio_bridge.sender")


@dataclass
class SenderSettings:
    # The firmware drops text sent faster than one per 2 s; a little more
    # leaves room for the library's own writes.
    send_interval: float = 2.5
    budget_fraction: float = 0.10
    urgent_reserve: float = 0.25
    ack_timeout: timedelta = timedelta(seconds=90)
    max_attempts: int = 3
    retry_backoff: timedelta = timedelta(seconds=30)
    # How long the radio has to confirm taking a packet (its queue status
    # comes back over USB in milliseconds; silence means it dropped a copy).
    confirm_wait: float = 0.5
    # Federation traffic (outbox.FEDERATION_KEY_PREFIX) may use at most this share of the urgent
    # reserve in all: the rest of the reserve stays for this bench's own SOS, whatever the neighbours send.
    federation_share: float = 0.5


class Sender:
    """Sends one message per slot; lives on the bridge's one sending thread."""

    def __init__(self, link: RadioLink, ledger: AirtimeLedger, settings: SenderSettings) -> None:
        self.link = link
        self.ledger = ledger
        self.settings = settings
        self.preset = "LONG_FAST"
        self.region = "UNSET"
        self.failures = 0
        # What federation traffic spent, within the same window (it is in ``ledger`` too).
        self.federation_ledger = AirtimeLedger(window=ledger.window)
        # Destinations whose key a host pinned (federation members' hub radios): direct messages to
        # them go PKI-encrypted to that key only, never by the channel key.
        self.pinned_keys: dict[int, bytes] = {}

    def configure_radio(self, preset: str | None, region: str | None) -> None:
        self.preset = preset or "LONG_FAST"
        self.region = region or "UNSET"

    @property
    def budget_seconds(self) -> float:
        return duty_cycle_budget(self.region, self.settings.budget_fraction)

    def housekeeping(self, session: Session, now: datetime) -> None:
        outbox.expire_stale(session, now)
        outbox.time_out_unanswered(session, now, ack_timeout=self.settings.ack_timeout,
                                   max_attempts=self.settings.max_attempts, backoff=self.settings.retry_backoff)

    def pick(self, session: Session, now: datetime) -> tuple[outbox.OutboxMessage, float] | None:
        """The next message that fits the airtime its priority may use."""
        message = self._next(session, now, tuple(outbox.PRIORITIES))
        if message is None:
            return None
        seconds = self.airtime(message)
        if self._fits(now, message, seconds):
            return message, seconds
        if message.priority != outbox.URGENT:
            # Routine traffic has used its share; an urgent message may still use the reserve.
            urgent = self._next(session, now, (outbox.URGENT,))
            if urgent is not None:
                seconds = self.airtime(urgent)
                if self._fits(now, urgent, seconds):
                    return urgent, seconds
        return None

    def airtime(self, message: outbox.OutboxMessage) -> float:
        return text_airtime(message.text, self.preset, pki=message.destination in self.pinned_keys)

    def _next(self, session: Session, now: datetime, priorities: tuple[int, ...]) -> outbox.OutboxMessage | None:
        """The next due message, passing over federation traffic once it has used its share of the reserve."""
        message = outbox.next_due(session, now, priorities)
        if message is not None and is_federation(message) and not self._federation_fits(now, message):
            message = outbox.next_due(session, now, priorities, except_key_prefix=outbox.FEDERATION_KEY_PREFIX)
        return message

    def federation_allowance(self) -> float:
        return self.budget_seconds * self.settings.urgent_reserve * self.settings.federation_share

    def _federation_fits(self, now: datetime, message: outbox.OutboxMessage) -> bool:
        return self.federation_ledger.used(now) + self.airtime(message) <= self.federation_allowance() + 1e-9

    def _fits(self, now: datetime, message: outbox.OutboxMessage, seconds: float) -> bool:
        priority = Priority.URGENT if message.priority == outbox.URGENT else Priority.ROUTINE
        return self.ledger.can_send(now, seconds, priority, self.budget_seconds, self.settings.urgent_reserve)

    def send(self, session: Session, now: datetime, message: outbox.OutboxMessage, seconds: float) -> bool:
        """Put one message on the air. Commits twice: before the write and after it.

        Raises RadioBusy, with nothing changed, when the radio has no room for it.
        """
        if self.link.queue_full():
            raise RadioBusy("The radio's transmit queue is full.")
        packet_id = outbox.begin_send(session, now, message)
        session.commit()  # from here a crash leaves "sending": resent with the same id
        try:
            self.link.send_text(message.text, message.destination, packet_id, channel=message.channel,
                                public_key=self.pinned_keys.get(message.destination))
        except (RadioUnavailable, ValueError) as error:
            outbox.send_failed(session, message, str(error))
            session.commit()
            self.failures += 1
            if isinstance(error, RadioUnavailable):
                raise
            return False
        if self.link.radio_refused(packet_id):  # its queue filled up as we wrote: not on the air
            outbox.send_failed(session, message, "radio queue full")
            session.commit()
            raise RadioBusy("The radio's transmit queue is full.")
        outbox.mark_sent(session, now, message, seconds)
        session.commit()
        self._record(now, message, seconds)
        log.info("sent %s message %d (%.2f s on air)", message.priority_label, message.id, seconds)
        return True

    def resend_unanswered(self, session: Session, now: datetime, message: outbox.OutboxMessage) -> bool:
        """Ask the radio whether it already has ``message`` by sending it again with the same packet id.

        Used after the bridge (re)connects, for messages whose answer may have
        come while nobody was listening. A radio that took the packet before
        drops the copy without a word: the message went out once and is not
        repeated. One that takes it never had it (the write was cut short, or
        the radio restarted): it goes out now, for the first time. Returns
        True when it went on the air now (a send slot used).
        """
        seconds = self.airtime(message)
        packet_id = message.packet_id
        # Raises RadioBusy, before writing anything, when the radio has no room.
        self.link.send_text(message.text, message.destination, packet_id, channel=message.channel,
                            public_key=self.pinned_keys.get(message.destination))
        if self.link.radio_took(packet_id, wait=self.settings.confirm_wait):
            if message.state == outbox.SENT:
                message.attempts += 1  # a second write of the same message
            outbox.mark_sent(session, now, message, seconds)
            session.commit()
            self._record(now, message, seconds)
            log.info("re-sent %s message %d: the radio did not have it", message.priority_label, message.id)
            return True
        was_sending = message.state == outbox.SENDING
        outbox.mark_on_air(session, now, message, seconds)
        session.commit()
        if was_sending:
            self._record(now, message, seconds)
        log.info("%s message %d was already on the air before the restart; not repeated",
                 message.priority_label, message.id)
        return False

    def _record(self, now: datetime, message: outbox.OutboxMessage, seconds: float) -> None:
        self.ledger.record(now, seconds)
        if is_federation(message):
            self.federation_ledger.record(now, seconds)


def is_federation(message: outbox.OutboxMessage) -> bool:
    return bool(message.dedupe_key) and message.dedupe_key.startswith(outbox.FEDERATION_KEY_PREFIX)

"""The bridge process: keeps the radio connected, acts on what it hears, drains the outbox.

One thread does all of it, so every database write and every send happens in
one place, in order: the library's reader thread only writes each packet to
the journal (radio_bridge/journal.py) and wakes this thread. The serial link
never reconnects by itself, so this loop notices a lost radio (the library's
event, a failed write, the device node vanishing), closes it, and tries
again with a growing pause, for as long as it runs.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from radio_bridge.airtime import AirtimeLedger
from radio_bridge.inbound import Inbound, InboundSettings
from radio_bridge.journal import JOURNAL_FILE, Journal
from radio_bridge.listening import Listening
from radio_bridge.mesh import (
    RadioBusy,
    RadioSpec,
    RadioUnavailable,
    decode_packet,
)
from radio_bridge.packets import Ack, LinkLost, NodeInfoPacket, PanicPacket, PositionPacket, TextPacket
from radio_bridge.packets import Inbound as Event
from radio_bridge.sender import Sender, SenderSettings
from server.clock import utcnow
from server.db import HubBusy, checkpoint, make_engine, run_in_transaction
from server.domain import outbox, people, power_record, radio, radio_trust
from server.domain.people import Member, RoleAssignment
from server.domain.radio import BridgeStatus

log = logging.getLogger("radio_bridge")

SIM_DECISION = "simulated radio, for trying the hub out"
SIM_PLACE = "the simulated radio"
QUEUE_FULL = "the radio's transmit queue is full: messages wait in the outbox"
BATCH = 20  # journal entries acted on per turn, so a burst never holds back an urgent send for long
# The journal's WAL is truncated once it is empty and no packet was acted on
# for JOURNAL_QUIET_S (a burst costs one truncation, not one per packet), or
# whenever it is empty at least JOURNAL_TRUNCATE_S after the first packet since.
JOURNAL_QUIET_S = 1.0
JOURNAL_TRUNCATE_S = 30.0


@dataclass
class BridgeSettings:
    sender: SenderSettings = field(default_factory=SenderSettings)
    inbound: InboundSettings = field(default_factory=InboundSettings)
    reconnect_max: float = 60.0
    heartbeat_every: float = 5.0
    # A radio whose firmware hangs keeps its USB port open and sends no
    # event: after a third of this without a word the bridge asks it for a
    # sign of life, and after all of it treats the radio as lost.
    silence_limit: float = 120.0
    connect_timeout: float = 30.0
    # An urgent federation message the broker has not taken this long after it was made goes by radio.
    federation_mesh_after: float = 30.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BridgeSettings:
        return cls(
            sender=SenderSettings(
                send_interval=max(2.0, float(config["RADIO_SEND_INTERVAL_S"])),
                budget_fraction=float(config["RADIO_AIRTIME_BUDGET"]),
                urgent_reserve=float(config["RADIO_URGENT_RESERVE"]),
                ack_timeout=timedelta(seconds=float(config["RADIO_ACK_TIMEOUT_S"])),
                max_attempts=int(config["RADIO_SEND_ATTEMPTS"]),
                retry_backoff=timedelta(seconds=float(config["RADIO_RETRY_BACKOFF_S"])),
                federation_share=float(config.get("RADIO_FEDERATION_SHARE", 0.5)),
            ),
            inbound=InboundSettings(
                error_reply_every=timedelta(minutes=float(config["RADIO_ERROR_REPLY_MINUTES"])),
                max_attempts=int(config["RADIO_SEND_ATTEMPTS"]),
                retry_backoff=timedelta(seconds=float(config["RADIO_RETRY_BACKOFF_S"])),
                legal_hotline=str(config["LEGAL_HOTLINE"]),
                duress_word=str(config["DURESS_WORD"]),
                timezone=str(config.get("TIMEZONE") or ""),
            ),
            reconnect_max=float(config["RADIO_RECONNECT_MAX_S"]),
            silence_limit=float(config["RADIO_SILENCE_S"]),
            connect_timeout=float(config["RADIO_CONNECT_TIMEOUT_S"]),
            federation_mesh_after=float(config.get("FEDERATION_MESH_AFTER_S", 30)),
        )


class Bridge:
    """The bridge's state and its loop. Needs a database and a clock, not the web app."""

    def __init__(self, sessions: Callable[[], Session], clock: Callable[[], datetime], spec: RadioSpec,
                 settings: BridgeSettings, listening: Listening, sim_path: str | None = None) -> None:
        self.session = sessions()  # this thread's only session: every write the bridge makes goes through it
        self._engine = None  # disposed on close when the bridge made it
        self.clock = clock
        self.spec = spec
        self.settings = settings
        self.sim_path = sim_path
        # The radio's link, the journal and the events queue: made (and the radio perhaps opened)
        # before this bridge, while the domain layer loaded (radio_bridge/listening.py).
        self.listening = listening
        self.journal = listening.journal
        self.events: queue.Queue[Event | object] = listening.events
        self.link = listening.link
        self.ledger = AirtimeLedger()
        self.sender = Sender(self.link, self.ledger, settings.sender)
        self.node_num: int | None = None
        self.inbound = Inbound(radio_node=lambda: self.node_num, settings=settings.inbound)
        self._unjournaled = listening.unjournaled  # what the journal could not take goes first
        self._recheck: deque[int] = deque()  # outbox ids to ask the radio about after a (re)connect
        self._backoff = 1.0
        self._next_connect = 0.0
        self._next_send = 0.0
        self._next_heartbeat = 0.0
        self._next_poke = 0.0
        self._status: dict = {"connected": False, "last_error": None, "reconnects": 0, "last_packet_at": None}
        self._status_since = None
        self.info = None
        # Monotonic times of the first and the last journal entry acted on since its WAL was truncated.
        self._journal_used: tuple[float, float] | None = None
        self._closed = False
        # Urgent federation alerts by radio (radio_bridge/federation_mesh.py): loaded once this bench has
        # joined a federation, looked for at each connect and every minute.
        self.federation_mesh = None
        self.instance: Path | None = None  # where this bench's federation signing key is, when made from config
        self._next_federation = 0.0
        self._next_federation_check = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], spec: RadioSpec, sim_path: str | None = None,
                    settings: BridgeSettings | None = None, listening: Listening | None = None) -> Bridge:
        """A bridge on the hub's database, from the hub's settings (see server.config.load_settings).

        ``listening``: the radio's link and journal if the process made them
        first (radio_bridge/main.py), on the same settings.
        """
        engine = make_engine(config["DATABASE_URL"], int(config["DB_BUSY_TIMEOUT_MS"]))
        settings = settings or BridgeSettings.from_config(config)
        clock = config.get("CLOCK", utcnow)
        if listening is None:
            listening = Listening(Journal(Path(config["INSTANCE"]) / JOURNAL_FILE), clock, settings.connect_timeout)
        bridge = cls(sessionmaker(engine), clock, spec, settings, listening, sim_path=sim_path)
        bridge._engine = engine
        bridge.instance = Path(config["INSTANCE"])
        return bridge

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        """Let go of the radio and both databases, their WALs truncated (a clean stop leaves no copies behind)."""
        if self._closed:
            return
        self._closed = True
        self.session.close()
        self.listening.close()  # the radio (once an opening under way has finished), then the journal
        if self._engine is not None:
            try:
                checkpoint(self._engine)
            except Exception:  # noqa: BLE001  (a stop must not fail over it: the worker truncates it later)
                log.warning("could not truncate the database's WAL on the way out", exc_info=True)
            self._engine.dispose()

    # -- the loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._seed_ledger()
        self._status_since = self.now()
        self._write_status()
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.link.close()
            self._status["connected"] = False
            self._status["last_error"] = "bridge stopped"
            self._write_status()
            self.close()

    def run_once(self, wait: float = 0.1) -> None:
        """One turn: connect if due, act on what was heard, send if a slot is free."""
        if self.listening.opened_early or (not self.link.is_open and time.monotonic() >= self._next_connect):
            self._connect()
        self._handle_events(wait if self.link.is_open else min(wait, 0.05))
        self._truncate_journal()
        if self.link.is_open and not self.link.device_present():
            self._lost("the radio's device disappeared (unplugged?)")
        if self.link.is_open:
            self._watch_silence()
        if self.link.is_open and time.monotonic() >= self._next_federation:
            self._federation_turn()
        if self.link.is_open and time.monotonic() >= self._next_send:
            self._send_one()
        if time.monotonic() >= self._next_heartbeat:
            self._write_status()

    # -- connection -------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            # With when the line was last read, from before opening: the handshake's packets move it on.
            last_read, self.info = self.listening.open(self.spec, device_path=self.sim_path)
        except RadioUnavailable as error:
            self._status["last_error"] = str(error)
            self._next_connect = time.monotonic() + self._backoff
            log.warning("radio not available (%s); trying again in %.0f s", error, self._backoff)
            self._backoff = min(self.settings.reconnect_max, self._backoff * 2)
            return
        self.node_num = self.info.node_num
        self.sender.configure_radio(self.info.modem_preset, self.info.region)
        self._plan_recheck()
        if last_read is not None:
            self._ask_to_resend(float(last_read))
        self._offer_node_keys()
        if self.federation_mesh is not None:
            self.federation_mesh.radio_connected()
        self._next_federation_check = 0.0
        self._backoff = 1.0
        self._status.update(connected=True, last_error=None)
        self._status_since = self.now()
        log.info("radio connected: node %s, firmware %s, %s %s", people.format_node_id(self.info.node_num),
                 self.info.firmware, self.info.region, self.info.modem_preset)
        self._write_status()

    def _plan_recheck(self) -> None:
        """Answers to what was on its way may have come while nobody listened: ask the radio.

        Only a radio that has not restarted since can be asked (it forgets the
        ids it took when it boots); the firmware's boot count tells.
        """
        radio = f"{self.info.node_num}:{self.info.reboot_count}"
        same_radio = self.journal.recall("radio") == radio and self.info.reboot_count is not None
        self.journal.remember("radio", radio)
        if same_radio:
            self._recheck = deque(message.id for message in outbox.unanswered(self.session))
            self.session.commit()

    def _ask_to_resend(self, since: float) -> None:
        """Stewards the radio heard while no bridge read its line are asked to send again.

        A serial radio cannot tell that its client died: for up to 15 minutes
        it writes what it hears to the closed port, and those packets are gone.
        Its node list still says whom it heard, and when.
        """
        now = time.time()
        missed = [node for node, at in self.link.heard_since(since).items()
                  if at <= now + 60 and node != self.node_num]  # a radio clock far ahead is not evidence
        if not missed:
            return
        try:
            asked = run_in_transaction(self.session, lambda s: self.inbound.ask_to_resend(s, self.now(), missed))
        except HubBusy:
            log.warning("database busy; could not ask %d stewards to send again", len(missed))
            return
        if asked:
            # Not whom: handles with times in the process log would map stewards' nights.
            log.warning("the radio heard %d stewards while no bridge was reading; asked them to send again",
                        len(asked))

    def _offer_node_keys(self) -> None:
        """Keys the radio knows for registered stewards' nodes go to the hosts, to confirm or refuse."""
        try:
            new = run_in_transaction(self.session,
                                     lambda s: self.inbound.note_node_keys(s, self.now(), self.link.node_keys()))
        except HubBusy:
            log.warning("database busy; the radio's node keys are offered at the next connect")
            return
        if new:
            log.info("%d radio keys heard for registered nodes wait for a host on the stewards page", new)

    def _watch_silence(self) -> None:
        quiet = self.link.quiet_for()
        limit = self.settings.silence_limit
        if quiet >= limit:
            self._lost(f"the radio stopped answering (not a word from it in {quiet:.0f} s)")
        elif quiet >= limit / 3 and time.monotonic() >= self._next_poke:
            self._next_poke = time.monotonic() + limit / 3
            try:
                self.link.poke()
            except RadioUnavailable as error:
                self._lost(str(error))

    def _lost(self, reason: str) -> None:
        if not self.link.is_open:
            return
        log.warning("radio lost: %s", reason)
        self.link.close()
        self._status.update(connected=False, last_error=reason, reconnects=self._status["reconnects"] + 1)
        self._status_since = self.now()
        self._next_connect = time.monotonic() + self._backoff
        self._write_status()

    # -- inbound ------------------------------------------------------------------------

    def _handle_events(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            if not self._act_on_heard():
                time.sleep(0.5)  # the database is busy: the packets wait in the journal
                return
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if isinstance(event, LinkLost):
                self._lost(event.reason)
            if time.monotonic() >= deadline and self.events.empty():
                self._act_on_heard()
                return

    def _act_on_heard(self) -> bool:
        """Act on up to a batch of packets taken off the radio, oldest first; False when the database stayed busy.

        An entry leaves the journal only after the hub's transaction for it
        committed; killed in between, the entry is acted on again and the
        heard-packet table drops the repeat.
        """
        while self._unjournaled:
            raw, heard_at = self._unjournaled[0]
            if not self._act_on(raw, heard_at):
                return False
            self._unjournaled.popleft()
        for seq, heard_at, raw in self.journal.waiting(BATCH):
            if not self._act_on(raw, heard_at):
                return False
            self.journal.forget(seq)
            used = time.monotonic()
            self._journal_used = (self._journal_used[0] if self._journal_used else used, used)
        return True

    def _truncate_journal(self) -> None:
        """Once every packet heard is acted on, the journal's WAL goes too: it holds a copy of each one."""
        if self._journal_used is None or self._unjournaled:
            return
        first, last = self._journal_used
        now = time.monotonic()
        if now - last < JOURNAL_QUIET_S and now - first < JOURNAL_TRUNCATE_S:
            return
        try:
            if self.journal.depth() or not self.journal.checkpoint():
                return  # more to act on, or the file is busy: tried again next turn
        except sqlite3.Error:
            log.exception("could not truncate the journal's WAL; will try again")
            return
        self._journal_used = None

    def _act_on(self, raw: bytes, heard_at: datetime) -> bool:
        event = decode_packet(raw, heard_at)
        return True if event is None else self._handle(event)

    def _handle(self, event: Event) -> bool:
        """Act on one event in its own transaction; False when the database stayed busy."""
        now = self.now()
        if not isinstance(event, Ack):
            self._status["last_packet_at"] = now
        if isinstance(event, TextPacket) and event.text.startswith("SBF1|") and self._federated():
            own = self.node_num
            return self._in_transaction(lambda s: self.federation_mesh.handle_text(s, now, event, own), event)
        handler = {
            TextPacket: self.inbound.handle_text,
            PositionPacket: self.inbound.handle_position,
            PanicPacket: self.inbound.handle_panic,
            NodeInfoPacket: self.inbound.handle_node_info,
            Ack: self.inbound.handle_ack,
        }.get(type(event))
        if handler is None:
            return True  # telemetry and the like: a sign of life, nothing to do
        return self._in_transaction(lambda session: handler(session, now, event), event)

    def _in_transaction(self, work: Callable[[Session], str], event: Event) -> bool:
        """``work`` for one packet in its own transaction; False when the database stayed busy (the packet waits)."""
        try:
            outcome = run_in_transaction(self.session, work)
        except HubBusy:
            log.warning("database busy; holding a %s until it is free", type(event).__name__)
            return False
        except Exception:  # noqa: BLE001  (one bad packet must not stop the bridge)
            log.exception("could not handle a %s", type(event).__name__)
            return True
        # What was done, never from which node: node ids with times in the process log map stewards' nights.
        log.info("%s: %s", type(event).__name__, outcome)
        return True

    # -- the federation by radio ----------------------------------------------------------

    def _federated(self) -> bool:
        """Whether this bench is in a federation, loading the mesh's code the first time it is (a relay heard
        before the first turn's look, just after a start, is acted on all the same)."""
        if self.federation_mesh is None and _joined_a_federation(self.session):
            from radio_bridge.federation_mesh import FederationMesh  # only a federated bench loads it

            self.federation_mesh = FederationMesh.for_instance(
                self.instance, timedelta(seconds=self.settings.federation_mesh_after))
            log.info("this bench is in a federation: urgent alerts go to neighbour hubs by radio when "
                     "the broker does not take them")
        return self.federation_mesh is not None

    def _federation_turn(self) -> None:
        """Once a second: is this bench federated (every minute), pin its members' hubs, queue relays due."""
        self._next_federation = time.monotonic() + 1.0
        if time.monotonic() >= self._next_federation_check:
            self._next_federation_check = time.monotonic() + 60.0
            self._federated()
        mesh = self.federation_mesh
        if mesh is None:
            return
        now = self.now()
        own_key = self.info.public_key if self.info is not None else None
        try:
            mesh.pin(self.session, self.link, self.sender, own_node=self.node_num, own_key=own_key, now=now)
            self.session.commit()
            queued = run_in_transaction(self.session, lambda s: mesh.plan(s, now))
        except RadioUnavailable as error:
            self.session.rollback()
            self._lost(str(error))
            return
        except HubBusy:
            log.warning("database busy; federation relays are planned at the next turn")
            return
        except Exception:  # noqa: BLE001  (the federation must never stop the bridge's own work)
            self.session.rollback()
            log.exception("federation relays could not be planned; trying again")
            return
        if queued:
            log.info("%d urgent federation relays queued for neighbour hubs by radio", queued)

    # -- outbound -----------------------------------------------------------------------

    def _send_one(self) -> None:
        now = self.now()
        session = self.session
        try:
            if self._recheck:
                self._recheck_one(session, now)
                return
            self.sender.housekeeping(session, now)
            session.commit()
            picked = self.sender.pick(session, now)
            if picked is None:
                session.commit()
                self._next_send = time.monotonic() + 0.2
                return
            message, seconds = picked
            # The slot counts from the start of this send, not its end: the library sleeps 0.1 s
            # after every write, and the commits around it take time too, which would otherwise
            # stretch every slot past the interval an urgent message may have to wait.
            started = time.monotonic()
            self.sender.send(session, now, message, seconds)
            self._next_send = started + self.settings.sender.send_interval
            self._radio_has_room()
        except RadioBusy:
            self._radio_full()
        except RadioUnavailable as error:
            self._lost(str(error))
        except Exception:  # noqa: BLE001  (a locked database or a bad row: try again next slot)
            session.rollback()
            log.exception("sending failed; will try again")
            self._next_send = time.monotonic() + 1.0

    def _radio_full(self) -> None:
        """Hold sends, say so on the host's pages, and ask the radio again in a moment."""
        self.session.rollback()
        if self._status["last_error"] != QUEUE_FULL:
            log.warning("%s", QUEUE_FULL)
            self._status["last_error"] = QUEUE_FULL
            self._write_status()
        self._next_send = time.monotonic() + 2.0
        try:
            self.link.poke()  # the radio answers with its queue status: room again, or not yet
        except RadioUnavailable as error:
            self._lost(str(error))

    def _radio_has_room(self) -> None:
        if self._status["last_error"] == QUEUE_FULL:
            log.info("the radio's transmit queue has room again")
            self._status["last_error"] = None
            self._write_status()

    def _recheck_one(self, session: Session, now: datetime) -> None:
        """Before anything else after a (re)connect: was this unanswered message already on the air?"""
        message = session.get(outbox.OutboxMessage, self._recheck.popleft())
        if message is None or message.state not in (outbox.SENDING, outbox.SENT) or not message.packet_id:
            session.commit()
            return
        aired = self.sender.resend_unanswered(session, now, message)
        self._next_send = time.monotonic() + (self.settings.sender.send_interval if aired else 0.0)

    def _seed_ledger(self) -> None:
        for at, seconds, _priority in outbox.airtime_since(self.session, self.now() - timedelta(hours=1)):
            self.ledger.record(at, seconds)
        for at, seconds, _priority in outbox.airtime_since(self.session, self.now() - timedelta(hours=1),
                                                           key_prefix=outbox.FEDERATION_KEY_PREFIX):
            self.sender.federation_ledger.record(at, seconds)

    # -- status -----------------------------------------------------------------------

    def _write_status(self) -> None:
        self._next_heartbeat = time.monotonic() + self.settings.heartbeat_every
        now = self.now()

        def work(session) -> None:  # noqa: ANN001
            status = radio.bridge_status(session)
            if status is None:
                status = BridgeStatus(radio=str(self.spec), simulated=self.spec.kind == "sim", connected=False,
                                      since=now, heartbeat_at=now)
                session.add(status)
            status.radio = str(self.spec)
            status.simulated = self.spec.kind == "sim"
            status.connected = bool(self._status["connected"])
            status.since = self._status_since or now
            status.heartbeat_at = now
            status.last_packet_at = self._status["last_packet_at"]
            status.last_error = self._status["last_error"]
            status.reconnects = self._status["reconnects"]
            status.send_failures = self.sender.failures
            if self.info is not None:
                status.node_num = self.info.node_num
                status.firmware = self.info.firmware
                status.region = self.info.region
                status.modem_preset = self.info.modem_preset

        try:
            run_in_transaction(self.session, work)
        except HubBusy:
            log.warning("database busy; status not written this time")


def _joined_a_federation(session: Session) -> bool:
    """Whether this bench joined a federation, asked without loading the federation's code."""
    try:
        joined = session.execute(text("SELECT 1 FROM federation_bench LIMIT 1")).first() is not None
    except SQLAlchemyError:
        joined = False  # a database from before issue 17's migration
    session.rollback()
    return joined


def register_simulated_stewards(session, now: datetime, nodes, term_days: int) -> list[str]:  # noqa: ANN001
    """The simulated radio's stewards, registered so their check-ins are obeyed; handles say "sim".

    Their radio keys are pinned too, as a host pins a real steward's, so the
    quickstart shows verified direct messages beside unverified channel traffic.
    Their steward roles are in force at once, by the hub's own rule: they are
    nodes of the emulated radio only, and nobody could countersign for them.
    """
    handles = []
    cap = people.MAX_TERM_CAP_DAYS
    decision = people.Decision(now.date(), SIM_PLACE, SIM_DECISION)
    for node in nodes:
        handle = f"sim-{node.short_name.lower()}"
        radio_trust.register_radio(session, now, handle, node.num, decision, min(term_days, cap), cap,
                                   key=node.public_key, in_force="a simulated steward")
        handles.append(handle)
    return handles


def remove_simulated_stewards(session: Session, now: datetime) -> list[str]:
    """A real radio is on: the simulated radio's stewards go, and with them their shifts and positions.

    On a real radio their node ids would be strangers' (or, by chance, a
    neighbour's), obeyed as stewards. They are found by the decision their
    roles were seated on, which only ``register_simulated_stewards`` writes.
    Their log entries stay, as entries by no steward (their ids must never
    be reused: see patrol.entries_after); the end of each role is recorded
    as the hub's own act, as its start was. Returns their handles.
    """
    members = list(session.scalars(
        select(Member).join(RoleAssignment, RoleAssignment.member_id == Member.id)
        .where(RoleAssignment.decision == SIM_DECISION, RoleAssignment.decision_place == SIM_PLACE)
        .distinct().order_by(Member.id)))
    handles = []
    for member in members:
        for assignment in member.roles:
            if assignment.revoked_at is None and assignment.expires_at > now:
                power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="role-ended",
                                    subject=f"{member.handle}: {assignment.role}",  # as mandates words it
                                    reason="the bridge runs a real radio: the simulated radio's stewards are removed")
        if member.node_num is not None:
            for message in session.scalars(select(outbox.OutboxMessage).where(
                    outbox.OutboxMessage.destination == member.node_num, outbox.OutboxMessage.state == outbox.QUEUED)):
                message.state = outbox.EXPIRED  # for a radio that is not there
        handles.append(member.handle)
        session.delete(member)
    session.flush()
    return handles

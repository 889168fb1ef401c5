"""The federation's link to its MQTT broker: the only module that imports paho-mqtt.

A thread of the bridge process, started only when this bench has joined a
federation (``start_if_joined``); a bench that never federates never imports
this module, nor paho, nor ssl (tests/benchmarks/memory.py's ladder).

What it does, all on its own thread with its own database session:

- connects with this bench's broker user and password, over TLS when the
  address is ``mqtts://`` (the broker's CA file: ``SAFEBENCH_FEDERATION_CA_FILE``),
  as MQTT 5 with a persistent session (clean start off, the session kept
  ``FEDERATION_SESSION_DAYS`` by the broker), so what was published while this
  bench was away waits for it at the broker;
- subscribes with QoS 1 to the federation's topics,
  ``safebench/<federation>/<sending bench>/<kind>`` (no-local: not its own);
- queues this bench's new boundary alerts as soon as they are raised (a cheap
  look at the alert and case tables each poll; the scan itself only when they
  changed; the periodic messages are the scheduler's ``federation`` job), then
  publishes the core's outbox with QoS 1 and marks a message sent only when
  the broker's PUBACK arrives (a refusal, say by the ACL, is not an ack);
- hands each received payload to the core in a short transaction of its own
  (the write-lock rule: ``server.db.run_in_transaction``) and acknowledges it to
  the broker only once it is stored: a message the hub could not store yet (the
  database busy) is kept and tried again, and one lost with the process comes
  again from the broker;
- reconnects forever with a growing pause, and says so plainly, at most once a
  minute per kind of trouble, with no tracebacks for a broker that is down.

Acting twice on one message does nothing (the core's receive is idempotent on
the message id), so the duplicates QoS 1 allows cost one lookup each.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from server.clock import utcnow
from server.db import HubBusy, run_in_transaction
from server.domain import alerts, cases, federation

log = logging.getLogger("radio_bridge.federation")

TOPIC_ROOT = "safebench"
QOS = 1
SAY_AT_MOST_EVERY_S = 60.0
CONNECT_TIMEOUT_S = 10.0
STORE_BATCH = 25  # received messages stored in one transaction at most (a burst; each is checked alone)
STILL_JOINED_EVERY_S = 60.0  # after `safebench federation leave` the link stops within this


# -- addresses and topics ---------------------------------------------------------------


_SCHEMES = {"mqtts": True, "ssl": True, "tls": True, "mqtt": False, "tcp": False}  # scheme: TLS or not


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtts://HOST[:PORT]`` or ``mqtt://HOST[:PORT]`` (8883 and 1883 by default; ``ssl://``, ``tls://`` and
        ``tcp://`` as other programs write them); a clear ValueError else (websockets are not offered)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError(f"a broker address is mqtts://HOST[:PORT] or mqtt://HOST[:PORT] (got {url!r})")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"the broker address's port is not a number from 1 to 65535 (got {url!r})") from None
        tls = _SCHEMES[parts.scheme]
        return cls(unquote(parts.hostname), port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def topic_for(federation_name: str, bench: str, kind: str) -> str:
    """Where a bench publishes: under its own name, which is all the broker's ACL lets it write."""
    return f"{TOPIC_ROOT}/{federation_name}/{bench}/{kind}"


def subscription_for(federation_name: str) -> str:
    return f"{TOPIC_ROOT}/{federation_name}/#"


@dataclass(frozen=True)
class Membership:
    """What the link needs of this bench's joined federation (``federation.this_bench``)."""

    federation: str
    bench: str
    broker_url: str
    username: str
    password: str | None

    @property
    def client_id(self) -> str:
        # Stable across restarts: the broker keeps the session (what this bench missed) under it.
        return f"safebench/{self.federation}/{self.bench}"

    @classmethod
    def of(cls, bench: federation.FederationBench) -> Membership:
        """OSError when the password file cannot be read (said plainly by the caller)."""
        password = None
        if bench.broker_password_file:
            password = Path(bench.broker_password_file).read_text(encoding="utf-8").strip()
        # The broker's ACL lets a login write only under its own name: by default the login is the bench's name.
        return cls(bench.federation, bench.name, bench.broker_url, bench.broker_username or bench.name, password)


# -- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSettings:
    ca_file: str
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float
    session_expiry_s: int
    outbox_poll_s: float
    publish_batch: int
    joined_check_s: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LinkSettings:
        return cls(
            ca_file=str(config.get("FEDERATION_CA_FILE") or ""),
            keepalive_s=int(config.get("FEDERATION_KEEPALIVE_S", 60)),
            reconnect_min_s=float(config.get("FEDERATION_RECONNECT_MIN_S", 1)),
            reconnect_max_s=float(config.get("FEDERATION_RECONNECT_MAX_S", 120)),
            session_expiry_s=int(float(config.get("FEDERATION_SESSION_DAYS", 14)) * 86400),
            outbox_poll_s=float(config.get("FEDERATION_OUTBOX_POLL_S", 0.5)),
            publish_batch=int(config.get("FEDERATION_PUBLISH_BATCH", 50)),
            joined_check_s=float(config.get("FEDERATION_JOINED_CHECK_S", STILL_JOINED_EVERY_S)),
        )


class PlainLog:
    """Each kind of trouble said at most once a minute, with how often it happened meanwhile."""

    def __init__(self, every_s: float = SAY_AT_MOST_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def say(self, kind: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every_s:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        quiet = self._quiet.pop(kind, 0)
        self._last[kind] = now
        log.log(level, message + (f" ({quiet} more like it in the last minute)" if quiet else ""), *args)

    def clear(self, kind: str) -> None:
        self._last.pop(kind, None)
        self._quiet.pop(kind, None)


# -- the link ---------------------------------------------------------------------------


@dataclass
class _Received:
    mid: int
    qos: int
    topic: str
    payload: bytes


class FederationLink:
    """One bench's connection to its federation's broker, run on a thread of its own (``run``)."""

    def __init__(self, sessions: Callable[[], Session], clock: Callable[[], datetime], membership: Membership,
                 settings: LinkSettings, instance: Path | str) -> None:
        self.session = sessions()  # this thread's only session
        self.clock = clock
        self.membership = membership
        self.settings = settings
        # The key signs what this bench queues; without it (the file gone) the link still receives.
        self.instance = instance
        self.key = federation.load_signing_key(instance)
        self.address = BrokerAddress.parse(membership.broker_url)
        self.say = PlainLog()
        self.client = self._make_client()
        self.connected = False
        self.subscribed = False  # to the federation's topics, on this connection
        self._ever_connected = False
        self._backoff = settings.reconnect_min_s
        self._next_connect = 0.0
        self._next_poll = 0.0
        self._in_flight: dict[int, int] = {}  # paho's message id -> the core's outbox id, until the PUBACK
        self._to_mark: deque[int] = deque()  # acknowledged by the broker, not yet recorded (database busy)
        self._held: deque[_Received] = deque()  # received, not yet stored (database busy): not acknowledged
        self._refused_until: dict[int, float] = {}  # outbox ids the broker refused: not before this time
        self._alerts_seen: tuple | None = None  # the alert and case tables as last scanned
        self._next_joined_check = time.monotonic() + self.settings.joined_check_s
        self.left = False
        self.counts = {"published": 0, "acknowledged": 0, "received": 0, "accepted": 0, "refused": 0, "connects": 0}

    # paho's client, set up once: its in-flight messages survive a reconnect and are sent again.
    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.membership.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        client.username_pw_set(self.membership.username, self.membership.password)
        if self.address.tls:
            client.tls_set(ca_certs=self.settings.ca_file or None)  # None: the system's CAs
        client.connect_timeout = CONNECT_TIMEOUT_S
        # The network loop never sleeps or reconnects by itself: this thread decides (and says) when.
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def now(self) -> datetime:
        return self.clock()

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("federation %s: linking this bench (%s) through %s", self.membership.federation,
                 self.membership.bench, self.address)
        try:
            while not stop.is_set() and not self.left:
                self.run_once(stop)
        finally:
            self.close()

    def run_once(self, stop: threading.Event, wait: float = 0.1) -> None:
        if self.client.socket() is None:
            if time.monotonic() >= self._next_connect:
                self._connect()
            else:
                stop.wait(wait)
        else:
            rc = self.client.loop(timeout=wait)
            # Whatever else has arrived already, read now (paho reads a packet a turn), so a burst is stored
            # a batch at a time.
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and 0 < len(self._held) < STORE_BATCH:
                before = len(self._held)
                rc = self.client.loop(timeout=0)
                if len(self._held) == before:
                    break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(mqtt.error_string(rc))
        self._store_held()
        self._record_acknowledged()
        # Queued whether or not the broker is there: the outbox is what a bench catches up from.
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.settings.outbox_poll_s
            self._queue_new()
            if self.connected:
                self._publish_due()

    def close(self) -> None:
        self.connected = False  # a stop, not a broker gone: nothing to say
        try:
            if self.client.socket() is not None:
                self.client.disconnect()
                self.client.loop(timeout=0.2)  # the DISCONNECT out; the session stays at the broker
        except Exception:  # noqa: BLE001, S110  (a stop must not fail over a socket already gone)
            pass
        self.session.close()

    # -- connecting ------------------------------------------------------------------------

    def _connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=self.settings.keepalive_s,
                                clean_start=False, properties=properties)
        except (OSError, ValueError) as error:  # refused, unreachable, a name that does not resolve, TLS
            self._wait_to_reconnect(f"could not reach the broker at {self.address}: {_plainly(error)}")

    def _wait_to_reconnect(self, why: str) -> None:
        self.connected = self.subscribed = False
        # A growing pause with some jitter, so benches that lost the broker together do not return together.
        pause = self._backoff * random.uniform(0.8, 1.2)
        self._next_connect = time.monotonic() + pause
        self._backoff = min(self._backoff * 2, self.settings.reconnect_max_s)
        self.say.say("down", logging.WARNING, "federation: %s; trying again in %.0f s", why, pause)

    def _lost(self, why: str) -> None:
        if self.client.socket() is not None:
            try:
                self.client.disconnect()
            except Exception:  # noqa: BLE001, S110  (already gone: reconnecting is what follows)
                pass
        self._wait_to_reconnect(f"lost the broker ({why})" if self.connected else why)

    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: Any, reason_code: Any,
                    _properties: Any) -> None:
        if reason_code.is_failure:
            # Wrong password, unknown user, not allowed: said plainly; trying again soon does no harm.
            self._next_connect = 0.0
            self._lost(f"the broker refused this bench's login: {reason_code}")
            return
        self.connected = True
        self._backoff = self.settings.reconnect_min_s
        self.counts["connects"] += 1
        self.say.clear("down")
        back = "again " if self._ever_connected else ""
        self._ever_connected = True
        log.info("federation %s: connected %sto %s (session %s)", self.membership.federation, back, self.address,
                 "kept" if flags.session_present else "new")
        # Subscribed every time: harmless when the broker kept the session, needed when it did not.
        client.subscribe(subscription_for(self.membership.federation),
                         options=SubscribeOptions(qos=QOS, noLocal=True))
        self._next_poll = 0.0

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int, reason_codes: list,
                      _properties: Any) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        self.subscribed = not refused
        if refused:
            self.say.say("subscribe", logging.ERROR, "federation: the broker refused this bench's subscription "
                         "to %s: %s (check its ACL)", subscription_for(self.membership.federation), refused[0])

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: Any, reason_code: Any,
                       _properties: Any) -> None:
        self.subscribed = False
        if self.connected:
            self.connected = False
            self.say.say("down", logging.WARNING, "federation: the broker at %s went away (%s); reconnecting",
                         self.address, reason_code)

    # -- out ----------------------------------------------------------------------------

    def _queue_new(self) -> None:
        """This bench's new boundary alerts into the outbox as soon as they are raised."""
        if time.monotonic() >= self._next_joined_check:
            self._next_joined_check = time.monotonic() + self.settings.joined_check_s
            if self._has_left():
                return
        if self.key is None:
            return
        seen = self._alert_tables()
        if seen is None or seen == self._alerts_seen:
            return
        try:
            queued = run_in_transaction(self.session, lambda s: federation.queue_new_alerts(s, self.now(), self.key))
        except (HubBusy, IntegrityError) as error:  # busy, or the scheduler queued the same a moment ago
            self.say.say("busy", logging.WARNING, "federation: could not queue this bench's alerts yet: %s",
                         _plainly(error))
            return
        self._alerts_seen = seen
        if queued and self.connected:
            self._publish_due()  # now, not at the next poll: an SOS is why the link exists

    def _has_left(self) -> bool:
        """Whether this bench left its federation (the link then stops); a key made anew since is taken up."""
        try:
            bench = federation.this_bench(self.session)
            public_key = bench.public_key if bench is not None else None
            self.session.commit()
        except OperationalError:
            self.session.rollback()
            return False
        if public_key is None:
            log.info("federation %s: this bench left the federation; the link stops", self.membership.federation)
            self.left = True
            return True
        if self.key is None or federation.public_key_of(self.key) != public_key:
            # Left and joined again with a new key (after a seizure) while the link ran: sign with the new one.
            self.key = federation.load_signing_key(self.instance)
        return False

    def _alert_tables(self) -> tuple | None:
        """Two aggregate reads: whether an alert or arrest case was raised, resolved or confirmed since the last scan."""
        try:
            seen = (*self.session.execute(select(func.count(), func.max(alerts.Alert.id),
                                                 func.sum(case((alerts.Alert.status == alerts.RESOLVED, 1), else_=0))))
                    .one(),
                    *self.session.execute(select(func.count(), func.max(cases.ArrestCase.id))
                                          .where(cases.ArrestCase.confirmed_at.is_not(None))).one())
            self.session.commit()  # a read: no transaction left open
            return seen
        except OperationalError:
            self.session.rollback()
            return None

    def _publish_due(self) -> None:
        busy = set(self._in_flight.values())
        now = time.monotonic()
        try:
            due = [(item.id, item.kind, item.payload.encode("utf-8"))
                   for item in federation.pending(self.session, self.now(), via="mqtt",
                                                  limit=self.settings.publish_batch + len(busy))]
            self.session.commit()  # a read: no transaction left open
        except OperationalError as error:  # the database busy: the next poll tries again
            self.session.rollback()
            self.say.say("outbox", logging.WARNING, "federation: could not read the outbox: %s", _plainly(error))
            return
        published = []
        for outbox_id, kind, payload in due:
            if outbox_id in busy or self._refused_until.get(outbox_id, 0) > now:
                continue
            info = self.client.publish(topic_for(self.membership.federation, self.membership.bench, kind),
                                       payload, qos=QOS)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.say.say("publish", logging.WARNING, "federation: could not publish: %s",
                             mqtt.error_string(info.rc))
                break
            self._in_flight[info.mid] = outbox_id
            published.append(outbox_id)
            self.counts["published"] += 1
        if published:
            self._record(lambda s: [federation.mark_attempt(s, self.now(), item)
                                    for item in self._items(s, published)])

    @staticmethod
    def _items(session: Session, ids: list[int]) -> list[federation.FederationOutbox]:
        return list(session.scalars(select(federation.FederationOutbox)
                                    .where(federation.FederationOutbox.id.in_(ids))))

    def _record(self, work: Callable[[Session], object]) -> bool:
        try:
            run_in_transaction(self.session, work)
        except HubBusy:
            return False
        return True

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int, reason_code: Any,
                    _properties: Any) -> None:
        outbox_id = self._in_flight.pop(mid, None)
        if outbox_id is None:
            return
        if reason_code.is_failure:
            # The broker took it but will not pass it on (its ACL, say): not sent. Tried again later.
            self.counts["refused"] += 1
            self._refused_until[outbox_id] = time.monotonic() + self.settings.reconnect_max_s
            self.say.say("refused", logging.ERROR, "federation: the broker refused a message of this bench: %s "
                         "(is this bench's broker user name its bench name, %r?)", reason_code,
                         self.membership.bench)
            return
        self._refused_until.pop(outbox_id, None)
        self.counts["acknowledged"] += 1
        self._to_mark.append(outbox_id)
        self._record_acknowledged()

    def _record_acknowledged(self) -> None:
        if not self._to_mark:
            return
        marked = list(self._to_mark)
        if not self._record(lambda s: [federation.mark_sent(s, self.now(), item, via="mqtt")
                                       for item in self._items(s, marked)]):
            self.say.say("busy", logging.WARNING, "federation: the database is busy; %d sent messages "
                         "are recorded as sent at the next try", len(marked))
            return
        for _ in marked:
            self._to_mark.popleft()

    # -- in -----------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self.counts["received"] += 1
        self._held.append(_Received(message.mid, message.qos, message.topic, bytes(message.payload)))

    def _store_held(self) -> None:
        """What arrived, stored and then acknowledged, up to STORE_BATCH messages in one short transaction.

        One transaction each would spend most of a burst's time syncing the
        database to the card (tests/benchmarks/federation.py).
        """
        while self._held:
            batch = [self._held[n] for n in range(min(STORE_BATCH, len(self._held)))]
            try:
                outcomes = run_in_transaction(self.session, lambda s, batch=batch: [
                    federation.receive(s, self.now(), received.payload, via="mqtt") for received in batch])
            except HubBusy:
                self.say.say("busy", logging.WARNING, "federation: the database is busy; %d received messages "
                             "wait (the broker keeps them until they are stored)", len(self._held))
                return
            except Exception:  # a bug: found out which message, so that it alone is dropped (below)
                if len(batch) > 1:
                    outcomes = self._store_one_by_one(batch)
                    if outcomes is None:
                        return
                else:
                    log.exception("federation: a message on %s could not be handled; dropped", batch[0].topic)
                    outcomes = [None]
            for received, outcome in zip(batch, outcomes, strict=True):
                self._said(received, outcome)
                self._held.popleft()
                if received.qos > 0:
                    self.client.ack(received.mid, received.qos)

    def _store_one_by_one(self, batch: list[_Received]) -> list[federation.Received | None] | None:
        outcomes: list[federation.Received | None] = []
        for received in batch:
            try:
                outcomes.append(run_in_transaction(self.session, lambda s, payload=received.payload:
                                                   federation.receive(s, self.now(), payload, via="mqtt")))
            except HubBusy:
                return None  # those stored are stored; all are offered again, and acting again is still once
            except Exception:  # a bug must not stop the link, nor leave this message to block every other
                log.exception("federation: a message on %s could not be handled; dropped", received.topic)
                outcomes.append(None)
        return outcomes

    def _said(self, received: _Received, outcome: federation.Received | None) -> None:
        if outcome is None:
            return
        if outcome.accepted:
            self.counts["accepted"] += 1
            if outcome.kind == federation.HELLO:
                # A bench heard for the first time may have subscribed after our last hello: the scan
                # (queue_new_alerts) answers with ours at the next poll, not the scheduler's next minute.
                self._alerts_seen = None
        elif outcome.reason != federation.DUPLICATE:  # QoS 1 repeats itself now and then: not news
            self.say.say(f"dropped {outcome.reason}", logging.WARNING,
                         "federation: dropped a message on %s: %s (counted on the federation page)",
                         received.topic, outcome.reason)


def _plainly(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.split("\n")[0]


# -- the thread ---------------------------------------------------------------------------


def link_for(settings: Mapping[str, Any], sessions: Callable[[], Session]) -> FederationLink | None:
    """A link for this bench's federation; None when it joined none, or what it joined cannot work (said)."""
    with sessions() as session:
        bench = federation.this_bench(session)
        if bench is None:
            return None
        try:
            membership = Membership.of(bench)
        except OSError as error:
            log.error("federation: not linking: the broker password file %s cannot be read (%s)",
                      bench.broker_password_file, _plainly(error))
            return None
    try:
        return FederationLink(sessions, settings.get("CLOCK", utcnow), membership, LinkSettings.from_config(settings),
                              settings["INSTANCE"])
    except (ValueError, OSError) as error:  # a broker address or CA file that cannot work
        log.error("federation: not linking: %s", _plainly(error))
        return None


def run_in_thread(link: FederationLink, stop: threading.Event) -> threading.Thread:
    def work() -> None:
        try:
            link.run(stop)
        except Exception:  # (the radio goes on whatever the link does)
            log.exception("federation: the link stopped; the radio bridge goes on without it")

    thread = threading.Thread(target=work, name="federation", daemon=True)
    thread.start()
    return thread


def start_if_joined(settings: Mapping[str, Any], stop: threading.Event, engine: Engine) -> threading.Thread | None:
    """The link on a thread of this process (the bridge, on its engine) if this bench joined a federation."""
    link = link_for(settings, sessionmaker(engine))
    return run_in_thread(link, stop) if link is not None else None

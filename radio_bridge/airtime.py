"""How long a packet is on the air, how much air a region allows, and a ledger of what was spent.

Time on air is the Semtech formula for SX127x/SX126x radios (SX1276
datasheet section 4.1.1.7, SX1261/2 datasheet section 6.1.4; the firmware asks
RadioLib, which computes the same) with what Meshtastic sets: a 16-symbol
preamble, explicit header, CRC on, and low data rate optimisation when a
symbol lasts 16 ms or more (RadioLib switches it on at >= 16 ms).

Preset parameters are the firmware's ``modemPresetToParams``
(``src/mesh/MeshRadio.h``); duty cycles are its region table
(``src/mesh/RadioInterface.cpp``). Both were read from the firmware sources
in mid-2026; re-check them when the firmware changes.

Pure and in memory: nothing here reads a clock or a database.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

PREAMBLE_SYMBOLS = 16
# Meshtastic's own header in front of every encrypted payload: to, from,
# id, flags, channel hash, next hop, relay node, padding.
MESH_HEADER_BYTES = 16
# A PKI direct message adds an 8-byte authentication tag and a 4-byte nonce (the firmware's
# MESHTASTIC_PKC_OVERHEAD) to the encrypted payload.
PKI_OVERHEAD_BYTES = 12
# LoRa carries at most 255 bytes in one packet.
MAX_LORA_PAYLOAD = 255
HOUR = 3600.0

# When a region sets no duty cycle of its own, the bridge still keeps to
# this share of each hour: the mesh is shared, and every hop repeats us.
DEFAULT_BUDGET_FRACTION = 0.10
DEFAULT_URGENT_RESERVE = 0.25


@dataclass(frozen=True)
class ModemPreset:
    """One Meshtastic modem preset: spreading factor, bandwidth and coding rate 4/``coding_rate``."""

    name: str
    spreading_factor: int
    bandwidth_khz: float
    coding_rate: int
    # Gone from current firmware; kept so an old radio's setting still has a number.
    deprecated: bool = False

    @property
    def symbol_seconds(self) -> float:
        """How long one LoRa symbol lasts."""
        return (2**self.spreading_factor) / (self.bandwidth_khz * 1000.0)

    @property
    def low_data_rate_optimize(self) -> bool:
        """Whether the radio turns on low data rate optimisation (symbols of 16 ms or more)."""
        return self.symbol_seconds >= 0.016


PRESETS: dict[str, ModemPreset] = {
    p.name: p
    for p in (
        ModemPreset("SHORT_TURBO", 7, 500.0, 5),
        ModemPreset("SHORT_FAST", 7, 250.0, 5),
        ModemPreset("SHORT_SLOW", 8, 250.0, 5),
        ModemPreset("MEDIUM_FAST", 9, 250.0, 5),
        ModemPreset("MEDIUM_SLOW", 10, 250.0, 5),
        ModemPreset("LONG_FAST", 11, 250.0, 5),
        ModemPreset("LONG_TURBO", 11, 500.0, 8),
        ModemPreset("LONG_MODERATE", 11, 125.0, 8),
        ModemPreset("LONG_SLOW", 12, 125.0, 8),
        # Removed from the firmware in April 2025 (meshtastic/firmware#6486);
        # a radio still set to it now runs LONG_FAST.
        ModemPreset("VERY_LONG_SLOW", 12, 62.5, 8, deprecated=True),
        # The EU 866 MHz and narrow-band 868 MHz presets of firmware 2.7.
        ModemPreset("LITE_FAST", 9, 125.0, 5),
        ModemPreset("LITE_SLOW", 10, 125.0, 5),
        ModemPreset("NARROW_FAST", 7, 62.5, 6),
        ModemPreset("NARROW_SLOW", 8, 62.5, 6),
    )
}


def preset_params(name: str | ModemPreset) -> ModemPreset:
    """The preset called ``name``, spelt as in the config ("LONG_FAST") or the apps ("LongFast")."""
    if isinstance(name, ModemPreset):
        return name
    key = "".join(ch for ch in name.upper() if ch.isalnum())
    for preset in PRESETS.values():
        if preset.name.replace("_", "") == key:
            return preset
    raise ValueError(f"Unknown modem preset {name!r}; known: {', '.join(PRESETS)}.")


def time_on_air(payload_bytes: int, preset: str | ModemPreset, *, preamble_symbols: int = PREAMBLE_SYMBOLS) -> float:
    """Seconds that one LoRa packet of ``payload_bytes`` (everything after the LoRa header) is on the air."""
    if not 0 <= payload_bytes <= MAX_LORA_PAYLOAD:
        raise ValueError(f"A LoRa packet carries 0 to {MAX_LORA_PAYLOAD} bytes, not {payload_bytes}.")
    p = preset_params(preset)
    sf = p.spreading_factor
    de = 1 if p.low_data_rate_optimize else 0
    crc, implicit_header = 1, 0
    payload_symbols = 8 + max(
        math.ceil((8 * payload_bytes - 4 * sf + 28 + 16 * crc - 20 * implicit_header) / (4 * (sf - 2 * de)))
        * p.coding_rate,
        0,
    )
    return (preamble_symbols + 4.25 + payload_symbols) * p.symbol_seconds


def text_payload_bytes(text: str) -> int:
    """Bytes on the air for a text message: Meshtastic's header and the ``Data`` protobuf around the text.

    The protobuf is the port number (2 bytes), the payload's tag and length
    (2 bytes, 3 from 128 bytes of text on; none for an empty text) and the
    bitfield the firmware adds to what it sends (2 bytes): 6 or 7 in all.
    Encryption (AES-CTR) adds none. Checked against ``mesh_pb2.Data``.
    """
    n = len(text.encode("utf-8", "surrogatepass"))
    payload_field = 1 + _varint_len(n) + n if n else 0
    return MESH_HEADER_BYTES + 2 + payload_field + 2


def text_airtime(text: str, preset: str | ModemPreset, *, pki: bool = False) -> float:
    """Seconds one text message is on the air, once, from one radio (each hop repeats it).

    ``pki``: sent as a PKI direct message, 12 bytes longer on the air.
    """
    return time_on_air(text_payload_bytes(text) + (PKI_OVERHEAD_BYTES if pki else 0), preset)


def _varint_len(n: int) -> int:
    length = 1
    while n >= 0x80:
        n >>= 7
        length += 1
    return length


# Regions whose rules limit the share of time a radio may transmit, as the
# firmware enforces them: it counts everything the radio sent in the last
# sixty minutes (relayed packets, position and telemetry included) and past
# the limit refuses to send, with the NAK DUTY_CYCLE_LIMIT. Our ledger sees
# only the bridge's own messages, so in these regions configure a share a
# little under the law's. Everything else (US, ANZ, ...) has no limit there.
LEGAL_DUTY_CYCLE: dict[str, float] = {
    "EU_433": 0.10,
    "EU_868": 0.10,
    "EU_N_868": 0.10,
    # 2.5 % for handhelds; the firmware allows 10 % only for ROUTER roles.
    "EU_866": 0.025,
    "TH": 0.10,
    "UA_433": 0.10,
    # Dropped from the firmware in July 2026 (Ukraine adopted the EU 868 rules)
    # but still in meshtastic 2.7's region list, and radios may still run it.
    "UA_868": 0.01,
}


def legal_duty_cycle(region: str) -> float | None:
    """The share of time a region lets a radio transmit, or None where the firmware sets no limit."""
    return LEGAL_DUTY_CYCLE.get(region.strip().upper())


def duty_cycle_budget(region: str, fraction: float = DEFAULT_BUDGET_FRACTION, window: float = HOUR) -> float:
    """Seconds of airtime the bridge may use per ``window``: its configured share, never above the law's."""
    if not 0 < fraction <= 1:
        raise ValueError(f"An airtime share is between 0 and 1, not {fraction}.")
    legal = legal_duty_cycle(region)
    if legal is not None:
        fraction = min(fraction, legal)
    return fraction * window


class Priority(StrEnum):
    """Which share of the budget a message may draw on."""

    URGENT = "urgent"
    ROUTINE = "routine"


Moment = TypeVar("Moment", float, datetime)
# Sums of floating-point seconds are compared with this much slack, so that
# a budget spent exactly to the limit still counts as fitting.
_EPSILON = 1e-9
_EPOCH = datetime(1970, 1, 1)


def _seconds(at: float | datetime) -> float:
    """Times as seconds on one clock: numbers as they are, datetimes as seconds since 1970 (naive means UTC)."""
    if isinstance(at, datetime):
        if at.tzinfo is not None:
            at = at.astimezone(UTC).replace(tzinfo=None)
        return (at - _EPOCH).total_seconds()
    return float(at)


def _like(now: Moment, seconds: float) -> Moment:
    """``seconds`` on the clock of ``now``, in ``now``'s own type."""
    if isinstance(now, datetime):
        return now + timedelta(seconds=seconds - _seconds(now))
    return float(seconds)


class AirtimeLedger:
    """What the hub's radio has spent on the air, to keep within a rolling-window budget.

    Urgent messages may use the whole budget; routine ones leave a reserved
    share of it free, so an SOS or an arrest alert never waits behind
    check-in confirmations. Times are given, never read: the bridge seeds the
    ledger from the outbox at start-up and records each send as it goes.
    Asking about a time forgets records a window older than it, so ask with
    times that move forward.
    """

    def __init__(self, spent: Iterable[tuple[float | datetime, float]] = (), window: float = HOUR) -> None:
        if window <= 0:
            raise ValueError("The ledger's window must be positive.")
        self.window = window
        self._times: list[float] = []
        self._seconds: list[float] = []
        for at, seconds in spent:
            self.record(at, seconds)

    def record(self, at: float | datetime, seconds: float) -> None:
        """Note that a transmission of ``seconds`` started at ``at``."""
        if seconds < 0 or math.isnan(seconds):
            raise ValueError(f"Airtime cannot be {seconds} seconds.")
        t = _seconds(at)
        i = bisect.bisect_right(self._times, t)
        self._times.insert(i, t)
        self._seconds.insert(i, seconds)

    def used(self, now: float | datetime, window: float | None = None) -> float:
        """Seconds spent in the ``window`` before ``now``.

        A record up to one window *after* ``now`` counts too: it means the
        clock was stepped back (a Pi has no clock battery), and spending too
        little is the safe mistake. Anything later than that is a clock error
        and is ignored.
        """
        window = self._check_window(window)
        t = _seconds(now)
        self._forget_before(t - self.window)
        lo = bisect.bisect_right(self._times, t - window)
        hi = bisect.bisect_right(self._times, t + window)
        return math.fsum(self._seconds[lo:hi])

    def allowance(self, priority: Priority | str, budget_seconds: float,
                  urgent_reserve_fraction: float = DEFAULT_URGENT_RESERVE) -> float:
        """How much of the budget a message of ``priority`` may draw on in all."""
        if not 0 <= urgent_reserve_fraction <= 1:
            raise ValueError(f"The urgent reserve is a share between 0 and 1, not {urgent_reserve_fraction}.")
        if Priority(priority) is Priority.URGENT:
            return budget_seconds
        return budget_seconds * (1 - urgent_reserve_fraction)

    def remaining(self, now: float | datetime, priority: Priority | str, budget_seconds: float,
                  urgent_reserve_fraction: float = DEFAULT_URGENT_RESERVE) -> float:
        """Seconds of airtime a message of ``priority`` could still use now (never negative)."""
        allowance = self.allowance(priority, budget_seconds, urgent_reserve_fraction)
        return max(0.0, allowance - self.used(now))

    def can_send(self, now: float | datetime, seconds: float, priority: Priority | str, budget_seconds: float,
                 urgent_reserve_fraction: float = DEFAULT_URGENT_RESERVE) -> bool:
        """Whether a transmission of ``seconds`` fits in what ``priority`` may use now."""
        allowance = self.allowance(priority, budget_seconds, urgent_reserve_fraction)
        return self.used(now) + seconds <= allowance + _EPSILON

    def next_available(self, now: Moment, seconds: float, priority: Priority | str, budget_seconds: float,
                       urgent_reserve_fraction: float = DEFAULT_URGENT_RESERVE) -> Moment | None:
        """The earliest time, from ``now`` on, that a transmission of ``seconds`` would fit, if nothing more is sent.

        ``now`` itself when it fits already; None when it never can (the
        message alone is more than the allowance: split it or send it to the
        web instead).
        """
        allowance = self.allowance(priority, budget_seconds, urgent_reserve_fraction)
        if seconds > allowance + _EPSILON:
            return None
        t = _seconds(now)
        self._forget_before(t - self.window)
        lo = bisect.bisect_right(self._times, t - self.window)
        hi = bisect.bisect_right(self._times, t + self.window)
        counted = self._seconds[lo:hi]
        total = math.fsum(counted)
        if total + seconds <= allowance + _EPSILON:
            return now
        # As time passes the oldest records leave the window one by one; the
        # answer is the moment enough of them have left. (Records more than a
        # window ahead are clock errors, left out here as in ``used``.)
        for k, spent in enumerate(counted):
            total -= spent
            if total + seconds <= allowance + _EPSILON:
                return self._when_gone(now, self._times[lo + k])
        # Only rounding can bring us here: by the last record, nothing is left.
        return self._when_gone(now, self._times[hi - 1])

    def _when_gone(self, now: Moment, recorded: float) -> Moment:
        """The first moment (in ``now``'s type) at which a record made at ``recorded`` no longer counts."""
        when = _like(now, recorded + self.window)
        # Seconds and datetimes round; step until ``used`` agrees it has gone.
        while _seconds(when) - self.window < recorded:
            if isinstance(when, datetime):
                when += timedelta(microseconds=1)
            else:
                when = math.nextafter(when, math.inf)
        return when

    def _forget_before(self, t: float) -> None:
        """Drop records that can no longer count, so a bridge running for weeks keeps an hour's worth."""
        # Pruned against the caller's "now", not the newest record: one
        # record stamped by a wrong clock must not wipe out the real ones.
        stale = bisect.bisect_right(self._times, t)
        if stale:
            del self._times[:stale], self._seconds[:stale]

    def _check_window(self, window: float | None) -> float:
        if window is None:
            return self.window
        if not 0 < window <= self.window:
            raise ValueError(f"The ledger keeps {self.window} s; ask for a window up to that, not {window}.")
        return window

    def __len__(self) -> int:
        return len(self._times)

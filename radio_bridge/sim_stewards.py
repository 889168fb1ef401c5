"""Simulated stewards chatting on the mesh, for the quickstart (opt-in)."""

from __future__ import annotations

import logging
import random
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radio_bridge.simulator import SimulatedRadio

logger = logging.getLogger(__name__)

AREAS = ["Market", "Station", "Park", "Library", "Canal"]
CHECK_INS = ["CI", "CI", "CI", "CI all quiet", "OK"]


def chatter_loop(radio: SimulatedRadio, interval_s: float, rng: random.Random, stop: threading.Event) -> None:
    """Every ``interval_s`` or so one simulated node starts a shift, checks in, or ends its shift."""
    on_shift: dict[int, str] = {}
    while not stop.wait(interval_s * rng.uniform(0.5, 1.5)):
        try:
            nodes = list(radio.device.nodes.values())
            if not nodes:
                continue
            node = rng.choice(nodes)
            if node.num not in on_shift:
                on_shift[node.num] = rng.choice(AREAS)
                radio.deliver_text(node, f"ON {on_shift[node.num]}")
            elif rng.random() < 0.15:
                del on_shift[node.num]
                radio.deliver_text(node, "OFF")
            else:
                if node.latitude is not None and node.longitude is not None and rng.random() < 0.5:
                    radio.deliver_position(node, node.latitude + rng.uniform(-5e-4, 5e-4),
                                           node.longitude + rng.uniform(-5e-4, 5e-4))
                radio.deliver_text(node, rng.choice(CHECK_INS))
        except Exception:
            logger.exception("simulated steward chatter failed")

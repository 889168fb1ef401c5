"""The Meshtastic serial stream framing, as the simulated radio plays it.

A frame is ``0x94 0xC3 <len hi> <len lo> <protobuf>``. Anything outside a
frame is the radio's debug log (radio to host) or wake-up bytes (host to
radio); frames that announce more than 512 bytes are dropped, as both the
firmware and the library do.
"""

from __future__ import annotations

import random

START1 = 0x94
START2 = 0xC3
HEADER_LEN = 4
MAX_FRAME_LEN = 512


def frame(payload: bytes) -> bytes:
    """Wrap one serialized protobuf in the stream header."""
    if len(payload) > MAX_FRAME_LEN:
        raise ValueError(f"frame of {len(payload)} bytes is over the {MAX_FRAME_LEN}-byte limit")
    return bytes([START1, START2, len(payload) >> 8, len(payload) & 0xFF]) + payload


class FrameReader:
    """Cut a byte stream into frame payloads, resynchronising on junk."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._want = 0
        self.noise_bytes = 0
        self.oversized_frames = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes off the line; return the payloads they completed."""
        payloads: list[bytes] = []
        buf = self._buf
        for byte in data:
            if not buf:
                if byte == START1:
                    buf.append(byte)
                else:
                    self.noise_bytes += 1
                continue
            if len(buf) == 1:
                if byte == START2:
                    buf.append(byte)
                else:
                    buf.clear()
                    self.noise_bytes += 2
                    if byte == START1:  # the junk byte may itself start a frame
                        buf.append(byte)
                        self.noise_bytes -= 1
                continue
            buf.append(byte)
            if len(buf) == HEADER_LEN:
                self._want = (buf[2] << 8) | buf[3]
                if self._want > MAX_FRAME_LEN:
                    self.oversized_frames += 1
                    buf.clear()
                    continue
            if len(buf) >= HEADER_LEN and len(buf) == HEADER_LEN + self._want:
                payloads.append(bytes(buf[HEADER_LEN:]))
                buf.clear()
        return payloads


def garbage_mix(rng: random.Random | None = None) -> bytes:
    """Line noise of every kind the library must survive, ending in sync.

    Random bytes, a debug log line, a header announcing a huge frame, a
    frame that is not a protobuf, a frame with only unknown fields, and a
    truncated frame whose missing tail is made up by the noise after it (on
    a real line a cut-off frame swallows whatever follows it, so the noise
    is what keeps the next real frame intact).
    """
    rng = rng or random.Random()
    noise = bytes(rng.choice([b for b in range(256) if b != START1]) for _ in range(48))
    log_line = b"DEBUG | 12:00:00 42 [Sim] noise on the line \xff\xfe\r\n"
    huge_header = bytes([START1, START2, 0xFF, 0xFF])
    short_header = bytes([START1, 0x00])
    not_protobuf = frame(b"\xff" * 6)
    unknown_fields = frame(b"\xf8\x07\x01")  # field 127, varint 1: decodes to nothing the library knows
    # The noise that completes the cut-off frame is 0xFF: a varint that never
    # ends, so the frame fails to decode whatever the random noise would say.
    truncated = bytes([START1, START2, 0x00, 0x30]) + b"\x12\x05\x08\x01" + b"\xff" * (0x30 - 4)
    return noise + log_line + huge_header + short_header + not_protobuf + unknown_fields + truncated + noise

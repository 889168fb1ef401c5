"""A receipt code as a key: what an aid poster alone may read.

A neighbour who posts on the aid board has no account, only the receipt
code on their phone. Helpers' answers may say how to reach the helper, meant
for the poster alone, so they are sealed to a key pair made from the code:
Argon2id(code, the hub's salt) gives 40 bytes; 11 characters of them find
the post (``AidPost.receipt_lookup``), the rest is the post's private key,
whose public half alone is stored. The code itself is never stored, so the
card holds neither the code nor anything that opens the answers without
guessing it: 40 random bits, each guess an Argon2id run (README, "A seized
hub reveals nothing").

The salt is the hub's own, so a table of guesses made for one hub is useless
on another; it and the cost are kept with it, so changing
SAFEBENCH_KDF_* later never turns a code away.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from nacl.public import PrivateKey, PublicKey
from nacl.pwhash import argon2id
from nacl.utils import random as random_bytes
from sqlalchemy import LargeBinary
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.domain import sealing
from server.domain.base import Base
from server.domain.codes import ALPHABET

LOOKUP_LENGTH = 11  # 55 bits: no two posts among many thousands share one
_LOOKUP_BYTES = 7
_DERIVED = _LOOKUP_BYTES + PrivateKey.SIZE

# Each run holds SAFEBENCH_KDF_MEMORY_KIB (32 MiB) while it lasts. Anyone on
# the bench WiFi can ask for one, so they run one at a time: a crowd of
# lookups waits its turn instead of taking the Pi's memory.
_ONE_AT_A_TIME = threading.Lock()


class ReceiptKdf(Base):
    """The hub's salt and Argon2id cost for receipt codes (one row, made with the first post)."""

    __tablename__ = "receipt_kdf"

    id: Mapped[int] = mapped_column(primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    kdf_passes: Mapped[int]
    kdf_memory_kib: Mapped[int]


@dataclass(frozen=True)
class ReceiptKey:
    """What a receipt code opens: the lookup that finds its row, and the private key for its sealed words."""

    lookup: str
    private: PrivateKey

    @property
    def public(self) -> bytes:
        return bytes(self.private.public_key)

    def open(self, sealed: str | None) -> str | None:
        """Words sealed for this code's holder (``seal_for``)."""
        return sealing.open_text(sealed, {sealing.RECEIPT: self.private})


def _kdf(session: Session) -> ReceiptKdf:
    kdf = session.get(ReceiptKdf, 1)
    if kdf is None:
        passes, memory = sealing.kdf_cost()
        kdf = ReceiptKdf(id=1, salt=random_bytes(argon2id.SALTBYTES), kdf_passes=passes, kdf_memory_kib=memory)
        session.add(kdf)
        session.flush()
    return kdf


def key_for(session: Session, code: str) -> ReceiptKey:
    """The key a (normalised) receipt code makes on this hub."""
    kdf = _kdf(session)
    return derive(code, kdf.salt, kdf.kdf_passes, kdf.kdf_memory_kib)


def derive(code: str, salt: bytes, passes: int, memory_kib: int) -> ReceiptKey:
    with _ONE_AT_A_TIME:
        derived = argon2id.kdf(_DERIVED, code.encode("ascii"), salt, opslimit=passes, memlimit=memory_kib * 1024)
    bits = int.from_bytes(derived[:_LOOKUP_BYTES], "big")
    lookup = "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(LOOKUP_LENGTH))
    return ReceiptKey(lookup, PrivateKey(derived[_LOOKUP_BYTES:]))


def seal_for(public_key: bytes, text: str) -> sealing.Sealed:
    """Seal ``text`` so that only the holder of the receipt code behind ``public_key`` reads it."""
    return sealing.seal_with(PublicKey(public_key), sealing.RECEIPT, text)

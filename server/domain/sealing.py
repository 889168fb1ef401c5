"""Sealed storage: what people wrote about people, readable only by whom their role lets read it.

A hub's SD card can be taken in a minute, so everything a person wrote
about people (mediation requests, arrest case details, contacts, what
stewards wrote in the log, complaints, the marks on the compact) is stored
sealed. Kinds, times, areas, counts, codes and handles stay readable: the
hub works and audits without opening anything.

How the keys hang together (libsodium through PyNaCl; nothing hand-made):

- Each *vault* (one per kind of data, ``READERS``) has an X25519 key pair.
  Its public half is in the database: the bench page, the radio bridge and
  the scheduler seal with it and never need anything else.
- Each member with a password has their own key pair. Its private half is
  wrapped (XSalsa20-Poly1305) with a key derived from their password by
  Argon2id, a memory-hard KDF, so the card alone never opens it.
- A vault's private half is given to each member whose role may read that
  vault: sealed to their public key (a *grant*). Logging in unwraps the
  member's key, then their grants; the opened keys live only in the web
  process's memory (server/web/keyring.py), never in a file or a log.
- Grants follow roles (``sync``): a new reader gets one the next time
  someone who holds the vault's key is logged in (or at once while the key
  still waits, below); a reader whose role lapsed loses theirs as long as
  another reader holds one, so no vault is ever left without a holder.
- A vault made before any of its readers has a key (a new hub, or records
  sealed by the upgrade) keeps its private half *pending*, in the clear,
  until the first reader has a key: the scheduler grants it within a
  minute and erases it. The README says so, and ``safebench lock --status``
  names any vault still waiting.

Columns are declared ``SealedText(kind)``: the type refuses plain text at
the database's door, and a flush seals whatever plain text was assigned,
so no service can forget. A value read back is a ``Sealed`` string that
only ``open_text`` (with the right vault key) turns back into words; a
template that prints one by mistake shows "sealed", not ciphertext.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from itertools import chain

from markupsafe import Markup
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.pwhash import argon2id
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes
from sqlalchemy import ForeignKey, LargeBinary, String, Text, event, inspect, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from server.domain import people
from server.domain.base import Base
from server.domain.errors import Invalid
from server.domain.people import Member

MEDIATION = "mediation"
CASES = "cases"
LOG = "log"
COMPLAINTS = "complaints"
AID = "aid"
COMPACT = "compact"

# Who may read each vault: exactly the roles whose pages show those words.
READERS: dict[str, frozenset[str]] = {
    MEDIATION: frozenset({people.MEDIATOR}),
    CASES: frozenset({people.DISPATCH, people.CARE}),
    LOG: frozenset({people.HOST, people.DISPATCH, people.CAPTAIN}),
    COMPLAINTS: frozenset({people.ACCOUNTABILITY}),
    AID: frozenset({people.HOST}),
    COMPACT: frozenset({people.HOST}),
}
# Not a vault: words sealed to a key that only a receipt code makes
# (server/domain/receipt_keys.py), each row its own. Nothing seals these
# on flush, as no single key could; plain text there is refused all the same.
RECEIPT = "receipt"
# Not a vault either: words between two members (a ledger memo), sealed to each one's own key, a part for
# each (``seal_to_members``); no role reads them, and nothing seals these on flush.
OWN = "own"

VAULT_LABELS = {
    MEDIATION: "mediation requests and notes",
    CASES: "arrest case details, contacts and step notes",
    LOG: "what stewards wrote in the log, and alert notes",
    COMPLAINTS: "complaints and their outcomes",
    AID: "the contacts aid posters left for the host",
    COMPACT: "the marks the compact was signed with",
}

PREFIX = "sealed1:"
SEPARATOR = " "  # base64 never holds a space: a value appended to is several sealed parts

# Argon2id's cost. Libsodium's "interactive" level uses 64 MiB; 32 MiB with
# three passes costs about the same time and half the memory, which a Pi
# Zero 2 W (512 MB, the whole hub in it) feels more than a few milliseconds.
# Kept per member key, so changing these later never locks anyone out.
# tests/benchmarks/sealing.py measures the login they make.
DEFAULT_KDF_PASSES = 3
DEFAULT_KDF_MEMORY_KIB = 32 * 1024


class SealingError(Exception):
    """Plain text reached a sealed column, or a sealed value could not be opened."""


class Sealed(str):
    """A sealed value as stored: ``sealed1:<vault>:<base64>`` (several, space-separated, when appended to)."""

    __slots__ = ()

    @property
    def vault(self) -> str:
        return self[len(PREFIX):].split(":", 1)[0]

    def __html__(self) -> str:
        # Printed without opening (a template's slip): say so, never show ciphertext.
        return Markup('<span class="sealed">sealed</span>')

    def __repr__(self) -> str:
        return f"<Sealed {self.vault}>"


class SealedText(TypeDecorator):
    """A text column that only ever holds ``Sealed`` values for ``vault``."""

    impl = Text
    cache_ok = True

    def __init__(self, vault: str) -> None:
        super().__init__()
        if vault not in READERS and vault not in (RECEIPT, OWN):
            raise ValueError(f"no vault {vault!r}")
        self.vault = vault

    def process_bind_param(self, value: object, dialect: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Sealed):
            # A bulk UPDATE or raw INSERT would bypass the flush that seals: refuse
            # rather than let words reach the card in the clear.
            raise SealingError(f"plain text for the sealed {self.vault} vault; assign it through the ORM")
        return value[:]  # a plain str for the driver

    def process_result_value(self, value: str | None, dialect: object) -> Sealed | None:
        return None if value is None else Sealed(value)


# -- the keys -------------------------------------------------------------------


class MemberKey(Base):
    """A member's own key pair: the private half wrapped with their password (Argon2id)."""

    __tablename__ = "member_key"

    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    wrapped_private: Mapped[bytes] = mapped_column(LargeBinary)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    kdf_passes: Mapped[int]
    kdf_memory_kib: Mapped[int]
    # A second password that opens an empty-looking dashboard and locks the hub.
    duress_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]

    member: Mapped[Member] = relationship()


class VaultKey(Base):
    """One vault's key pair: the public half for sealing, the private half only in grants (or pending)."""

    __tablename__ = "vault_key"

    vault: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    # Only while no reader of this vault has a key of their own; erased by ``sync``.
    pending_private: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    grants: Mapped[list[VaultGrant]] = relationship(back_populates="vault_key", cascade="all, delete-orphan")


class VaultGrant(Base):
    """A vault's private key sealed to one member's public key."""

    __tablename__ = "vault_grant"

    vault: Mapped[str] = mapped_column(ForeignKey("vault_key.vault", ondelete="CASCADE"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), primary_key=True)
    sealed_private: Mapped[bytes] = mapped_column(LargeBinary)
    granted_at: Mapped[datetime]

    vault_key: Mapped[VaultKey] = relationship(back_populates="grants")


def kdf_cost() -> tuple[int, int]:
    """(passes, memory in KiB) for new member keys: SAFEBENCH_KDF_PASSES / SAFEBENCH_KDF_MEMORY_KIB."""
    passes = int(os.environ.get("SAFEBENCH_KDF_PASSES", DEFAULT_KDF_PASSES))
    memory = int(os.environ.get("SAFEBENCH_KDF_MEMORY_KIB", DEFAULT_KDF_MEMORY_KIB))
    return max(1, passes), max(8, memory)


def _derive(password: str, salt: bytes, passes: int, memory_kib: int) -> bytes:
    return argon2id.kdf(SecretBox.KEY_SIZE, password.encode(), salt, opslimit=passes, memlimit=memory_kib * 1024)


def give_member_key(member: Member, password: str, now: datetime, keep: PrivateKey | None = None) -> PrivateKey:
    """Wrap ``keep`` (or a new key pair) with ``password``; a new pair ends every grant sealed to the old one."""
    private = keep or PrivateKey.generate()
    passes, memory = kdf_cost()
    salt = random_bytes(argon2id.SALTBYTES)
    wrapped = SecretBox(_derive(password, salt, passes, memory)).encrypt(bytes(private))
    session = inspect(member).session
    key = session.get(MemberKey, member.id) if session is not None and member.id is not None else None
    if key is None:
        key = MemberKey(member=member, created_at=now)
        if session is not None:
            session.add(key)
    elif keep is None and session is not None:
        # Sealed to a key nobody can open any more: gone, and given again by ``sync``.
        for grant in session.scalars(select(VaultGrant).where(VaultGrant.member_id == member.id)):
            session.delete(grant)
    key.public_key = bytes(private.public_key)
    key.wrapped_private, key.salt, key.kdf_passes, key.kdf_memory_kib = wrapped, salt, passes, memory
    key.created_at = now
    return private


def open_member_key(key: MemberKey, password: str) -> PrivateKey | None:
    """The member's private key, or None when ``password`` is not the one it was wrapped with."""
    try:
        box = SecretBox(_derive(password, key.salt, key.kdf_passes, key.kdf_memory_kib))
        return PrivateKey(box.decrypt(key.wrapped_private))
    except CryptoError:
        return None


def member_key(session: Session, member: Member) -> MemberKey | None:
    return session.get(MemberKey, member.id)


def open_grants(session: Session, member: Member, private: PrivateKey) -> dict[str, PrivateKey]:
    """Every vault key granted to ``member``, opened with their private key."""
    opened = {}
    box = SealedBox(private)
    for grant in session.scalars(select(VaultGrant).where(VaultGrant.member_id == member.id)):
        try:
            opened[grant.vault] = PrivateKey(box.decrypt(grant.sealed_private))
        except CryptoError:
            continue  # sealed to a key this member no longer has; ``sync`` replaces it
    return opened


# -- duress ------------------------------------------------------------------------


def set_duress_password(session: Session, member: Member, password: str | None) -> None:
    """A second password that logs in to an empty dashboard and locks the hub (None removes it)."""
    from werkzeug.security import generate_password_hash

    key = member_key(session, member)
    if key is None:
        raise SealingError("log in once with your own password first")
    if password is not None:
        people.check_new_password(password, field="duress_password")
        if people.check_password(member, password):
            raise Invalid("The duress password must differ from your password.", field="duress_password")
    key.duress_hash = generate_password_hash(password) if password else None


def is_duress_password(session: Session, member: Member | None, password: str) -> bool:
    from werkzeug.security import check_password_hash

    key = member_key(session, member) if member is not None else None
    return bool(key and key.duress_hash and check_password_hash(key.duress_hash, password))


# -- sealing -----------------------------------------------------------------------


def vault_public_key(session: Session, vault: str) -> PublicKey:
    """The vault's public key, making the vault (its private half pending) the first time it is needed."""
    key = session.get(VaultKey, vault) or next(
        (new for new in session.new if isinstance(new, VaultKey) and new.vault == vault), None)  # made this flush
    if key is None:
        private = PrivateKey.generate()
        key = VaultKey(vault=vault, public_key=bytes(private.public_key), pending_private=bytes(private))
        session.add(key)
    return PublicKey(key.public_key)


def seal_with(public: PublicKey, vault: str, text: str) -> Sealed:
    cipher = SealedBox(public).encrypt(text.encode("utf-8"))
    return Sealed(f"{PREFIX}{vault}:{base64.b64encode(cipher).decode('ascii')}")


def seal(session: Session, vault: str, text: str) -> Sealed:
    return seal_with(vault_public_key(session, vault), vault, text)


def append(session: Session, vault: str, sealed: str | None, text: str) -> Sealed:
    """``sealed`` followed by ``text`` on a new line, without opening what was there."""
    added = seal(session, vault, text)
    if not sealed:
        return added
    if not isinstance(sealed, Sealed):
        sealed = seal(session, vault, sealed)
    return Sealed(f"{sealed}{SEPARATOR}{added}")


def seal_to_members(public_keys: Iterable[bytes], text: str) -> Sealed | None:
    """``text`` sealed once to each member key given (``OWN``); None when there is no key to seal it to."""
    sealed = [seal_with(PublicKey(key), OWN, text) for key in dict.fromkeys(public_keys)]
    return Sealed(SEPARATOR.join(sealed)) if sealed else None


def open_own(value: str | None, private: PrivateKey | None) -> str | None:
    """Words ``seal_to_members`` sealed, if one of its parts is sealed to ``private``; else None."""
    if not isinstance(value, Sealed) or private is None:
        return None
    box = SealedBox(private)
    for part in value.split(SEPARATOR):
        vault, _, data = part[len(PREFIX):].partition(":")
        if vault != OWN:
            continue
        try:
            return box.decrypt(base64.b64decode(data)).decode("utf-8")
        except (CryptoError, ValueError):
            continue  # another member's part
    return None


def parts(value: str | None) -> int:
    """How many times words were sealed into ``value`` (``append`` adds one), without opening it."""
    if not value:
        return 0
    return value.count(SEPARATOR) + 1 if isinstance(value, Sealed) else 1


def is_sealed(value: object) -> bool:
    return isinstance(value, Sealed)


def open_text(value: str | None, vaults: Mapping[str, PrivateKey]) -> str | None:
    """The words in ``value``; None when empty. Raises SealingError without the vault's key."""
    if value is None:
        return None
    if not isinstance(value, Sealed):
        return value  # assigned a moment ago, not flushed yet: still the words themselves
    parts = []
    for part in value.split(SEPARATOR):
        vault, _, data = part[len(PREFIX):].partition(":")
        key = vaults.get(vault)
        if key is None:
            raise SealingError(f"the {vault} vault is not open")
        try:
            parts.append(SealedBox(key).decrypt(base64.b64decode(data)).decode("utf-8"))
        except (CryptoError, ValueError) as error:
            raise SealingError(f"a damaged sealed value in the {vault} vault") from error
    return "\n".join(parts)


@cache
def _sealed_columns(cls: type) -> tuple[tuple[str, str], ...]:
    mapper = inspect(cls, raiseerr=False)
    if mapper is None:
        return ()
    return tuple((attr.key, attr.columns[0].type.vault) for attr in mapper.column_attrs
                 if isinstance(attr.columns[0].type, SealedText) and attr.columns[0].type.vault in READERS)


@event.listens_for(Session, "before_flush")
def _seal_what_was_written(session: Session, _context: object, _instances: object) -> None:
    """Seal every plain text assigned to a sealed column since the last flush."""
    for obj in chain(session.new, session.dirty):
        for attr, vault in _sealed_columns(type(obj)):
            value = obj.__dict__.get(attr)
            if isinstance(value, str) and not isinstance(value, Sealed):
                setattr(obj, attr, seal(session, vault, value))


# -- grants follow roles ------------------------------------------------------------


def _members_with_keys(session: Session, now: datetime) -> list[tuple[MemberKey, set[str]]]:
    return [(key, people.active_roles(session, key.member, now)) for key in session.scalars(select(MemberKey))]


def sync(session: Session, now: datetime, opened: Mapping[str, PrivateKey] | None = None) -> list[str]:
    """Give each vault's key to every current reader who lacks it; take it from members who are no longer readers.

    ``opened``: vault keys this process holds (a logged-in reader's). Never
    leaves a vault without a holder. Returns what changed, for the log.
    """
    opened = opened or {}
    changes: list[str] = []
    vaults = session.scalars(select(VaultKey)).all()
    members = _members_with_keys(session, now) if vaults else []
    for vault in vaults:
        may_read = READERS.get(vault.vault, frozenset())
        readers = {key.member_id: key for key, roles in members if roles & may_read}
        private = opened.get(vault.vault)
        if private is None and vault.pending_private:
            private = PrivateKey(vault.pending_private)
        held = {grant.member_id: grant for grant in vault.grants}
        if private is not None and bytes(private.public_key) == vault.public_key:
            for member_id, key in readers.items():
                if member_id not in held:
                    sealed = SealedBox(PublicKey(key.public_key)).encrypt(bytes(private))
                    vault.grants.append(VaultGrant(member_id=member_id, sealed_private=sealed, granted_at=now))
                    changes.append(f"{vault.vault} key given to a reader")
        if any(grant.member_id in readers for grant in vault.grants):
            if vault.pending_private is not None:
                vault.pending_private = None
                changes.append(f"{vault.vault} key no longer waits on the card")
            for grant in list(vault.grants):
                if grant.member_id not in readers:
                    vault.grants.remove(grant)
                    changes.append(f"{vault.vault} key taken from a member who no longer reads it")
    return changes


def waiting_vaults(session: Session) -> list[str]:
    """Vaults whose private key still waits on the card, for want of a reader with a key."""
    return list(session.scalars(select(VaultKey.vault).where(VaultKey.pending_private.is_not(None))))


def vault_holders(session: Session) -> dict[str, int]:
    counts = {vault: 0 for vault in READERS}
    for vault in session.scalars(select(VaultKey)).all():
        counts[vault.vault] = len(vault.grants)
    return counts


def vaults_for(roles: Iterable[str]) -> set[str]:
    held = set(roles)
    return {vault for vault, readers in READERS.items() if readers & held}

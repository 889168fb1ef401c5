"""Mutual aid: offers and asks on the aid board.

A post shows what, which kind of help, roughly where and until when. It never
shows how to reach the person: someone who wants an offer leaves a message
through the hub, and either the host passes it on or the poster reads it
with their receipt code. Posts lapse by themselves, and finished posts are
deleted with their messages after the retention period.

The receipt code is the poster's key, not a row's label: the hub keeps only
what Argon2id makes of it (server/domain/receipt_keys.py), and a message is
sealed once for the poster (to the post's key) and, when the host's part
needs it, once for the host (the aid vault). A seized card opens neither.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from typing import NamedTuple

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint, delete, func, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship, selectinload

from server.domain import receipt_keys, sealing
from server.domain.base import Base
from server.domain.codes import new_receipt_code, normalize_receipt_code
from server.domain.receipt_keys import ReceiptKey
from server.domain.sealing import SealedText
from server.domain.contact_in_text import Found, find_contact
from server.domain.errors import Invalid, NotFound
from server.domain.patrol import Area
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

OFFER = "offer"
ASK = "ask"
KINDS = (OFFER, ASK)
KIND_LABELS = Labels({OFFER: N_("Offer"), ASK: N_("Ask")})

CATEGORIES = ("food", "charging", "repairs", "childcare", "rides", "other")
CATEGORY_LABELS = Labels({
    "food": N_("Food"),
    "charging": N_("Phone charging"),
    "repairs": N_("Repairs"),
    "childcare": N_("Childcare"),
    "rides": N_("Rides"),
    "other": N_("Other"),
})

OPEN = "open"
TAKEN = "taken"
WITHDRAWN = "withdrawn"
LAPSED = "lapsed"
HIDDEN = "hidden"
STATUS_LABELS = Labels({
    OPEN: N_("Open"),
    TAKEN: N_("Taken up"),
    WITHDRAWN: N_("Withdrawn"),
    LAPSED: N_("Lapsed"),
    HIDDEN: N_("Hidden by the host"),
})
# What a poster may do to their own post with the receipt code.
POSTER_CLOSINGS = (TAKEN, WITHDRAWN)

MAX_TEXT = 280
MAX_CONTACT = 200
MAX_MESSAGE = 1000
MAX_MESSAGES_PER_POST = 50
RECEIPT_PREFIX = "H"

# A post's text is public, so it must not say how to reach anyone (the private
# contact field is for that): see server/domain/contact_in_text.py for what is
# refused and what ordinary text (times, dates, amounts) still passes.
CONTACT_IN_TEXT = N_("Everyone can read the post, so leave phone numbers, email addresses and messenger handles "
                   "out of it: put how to reach you in the private field below, which only the hub host sees.")

# A helper answering a post chooses what the poster may see of how to reach
# them. SHOWN: their message says it, and the poster reads it. KEPT: it does
# not (the hub refuses a number, an email or a handle in it), and the poster
# answers at the bench or waits for the helper to come by. Nobody is asked to
# give the hub a contact the poster may not see: there is none to collect.
SHOWN = "shown"
KEPT = "kept"
CONTACT_CHOICES = (KEPT, SHOWN)
KEPT_BUT_WRITTEN = N_("You chose to keep how to reach you to yourself, so take it out of the message, "
                    "or choose to let the person who posted see it.")


def says_how_to_reach_someone(text: str) -> bool:
    """Whether text holds an email address, a phone number or a messenger handle."""
    return find_contact(text) is not None


def _refused_contact(found: Found, advice: str) -> str:
    return _("\u201c%(shown)s\u201d looks like %(what)s. %(advice)s", shown=found.shown, what=_(found.what),
             advice=_(advice))


class AidPost(Base):
    __tablename__ = "aid_post"
    # The board reads open posts newest first on every bench-page render.
    __table_args__ = (
        Index("ix_aid_post_status_created_at", "status", "created_at"),
        # The bench page counts open posts from this index alone (migration g14b0000bnc).
        Index("ix_aid_post_status_available_until", "status", "available_until"),
        # Named for the column's first life, when it held the code itself: SQLite
        # renames a constraint only by rebuilding the table, which with foreign
        # keys on would cascade to every message (migration f13k0000rcp).
        UniqueConstraint("receipt_lookup", name="uq_aid_post_receipt_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # What Argon2id makes of the receipt code finds the post; the code itself is never kept.
    receipt_lookup: Mapped[str] = mapped_column(String(receipt_keys.LOOKUP_LENGTH))
    # The public half of the key the receipt code makes: messages are sealed to it for the poster.
    poster_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    kind: Mapped[str] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(String(MAX_TEXT))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    # Private: only the host sees it, to connect people.
    contact: Mapped[str | None] = mapped_column(SealedText(sealing.AID))
    status: Mapped[str] = mapped_column(String(12), default=OPEN, index=True)
    created_at: Mapped[datetime]
    available_until: Mapped[datetime] = mapped_column(index=True)
    closed_at: Mapped[datetime | None] = mapped_column(index=True)

    area: Mapped[Area | None] = relationship()
    messages: Mapped[list[AidMessage]] = relationship(
        back_populates="post", cascade="all, delete-orphan", order_by="AidMessage.created_at"
    )

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def category_label(self) -> str:
        return CATEGORY_LABELS[self.category]

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    def is_open(self, now: datetime) -> bool:
        return self.status == OPEN and self.available_until > now


class AidMessage(Base):
    """A neighbour answering a post; private to the host and the poster."""

    __tablename__ = "aid_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("aid_post.id", ondelete="CASCADE"), index=True)
    # Sealed for the poster (the receipt code opens it), and for the host only when their part needs it.
    for_poster: Mapped[str] = mapped_column(SealedText(sealing.RECEIPT))
    for_host: Mapped[str | None] = mapped_column(SealedText(sealing.AID))
    # SHOWN or KEPT: what the helper lets the poster see of how to reach them.
    contact_choice: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    passed_on_at: Mapped[datetime | None]

    post: Mapped[AidPost] = relationship(back_populates="messages")

    @property
    def shows_contact(self) -> bool:
        return self.contact_choice == SHOWN

    @property
    def waits_for_the_host(self) -> bool:
        """The host has it to pass on: the poster left a way to reach them, and it is not passed on yet."""
        return bool(self.post.contact) and self.passed_on_at is None

    @property
    def host_may_read(self) -> bool:
        return self.for_host is not None


def host_may_read(post: AidPost, contact_choice: str) -> bool:
    """Whether a message is sealed for the host too (the host sees only what their part needs).

    A message that keeps the helper's contact holds none, so the host may
    read it to pass it on or to moderate. One that shows the helper's
    contact was meant for the poster: the host reads it only as the
    go-between, for a poster who left the hub a way to reach them.
    """
    return contact_choice != SHOWN or bool(post.contact)


class Posted(NamedTuple):
    """A new post and its receipt code: the code is handed to the poster once and kept nowhere."""

    post: AidPost
    receipt_code: str


class PosterView(NamedTuple):
    """A post as its poster sees it with their receipt code: each message with its words opened."""

    post: AidPost
    messages: list[tuple[AidMessage, str]]


def post_aid(
    session: Session,
    now: datetime,
    *,
    kind: str,
    category: str,
    text: str,
    area_id: int | None,
    days: int,
    max_days: int,
    contact: str | None = None,
) -> Posted:
    if kind not in KINDS:
        raise Invalid(_("Please say whether you offer or ask for help."), field="kind")
    if category not in CATEGORIES:
        raise Invalid(_("Please choose a kind of help."), field="category")
    if not 1 <= days <= max_days:
        raise Invalid(_("A post can stay up from 1 to %(max_days)s days.", max_days=max_days), field="days")
    area = None
    if area_id is not None:
        area = session.get(Area, area_id)
        if area is None:
            raise Invalid(_("Please choose an area from the list."), field="area")
    text = clean_text(text, field="description", max_length=MAX_TEXT)
    if found := find_contact(text):
        raise Invalid(_refused_contact(found, CONTACT_IN_TEXT), field="description")
    code, key = _unused_receipt(session)
    post = AidPost(
        receipt_lookup=key.lookup,
        poster_key=key.public,
        kind=kind,
        category=category,
        text=text,
        area=area,
        contact=clean_text(contact, field="way to reach you", max_length=MAX_CONTACT, required=False) or None,
        status=OPEN,
        created_at=now,
        available_until=now + timedelta(days=days),
    )
    session.add(post)
    session.flush()
    return Posted(post, code)


def _unused_receipt(session: Session) -> tuple[str, ReceiptKey]:
    while True:  # two codes sharing a lookup are rare, never impossible
        code = new_receipt_code(RECEIPT_PREFIX)
        key = receipt_keys.key_for(session, code)
        if session.scalar(select(AidPost.id).where(AidPost.receipt_lookup == key.lookup)) is None:
            return code, key


def open_posts(session: Session, now: datetime, limit: int | None = None) -> list[AidPost]:
    query = (
        select(AidPost)
        .options(joinedload(AidPost.area))
        .where(AidPost.status == OPEN, AidPost.available_until > now)
        .order_by(AidPost.created_at.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_open_posts(session: Session, now: datetime) -> int:
    return session.scalar(
        select(func.count(AidPost.id)).where(AidPost.status == OPEN, AidPost.available_until > now)
    )


def get_post(session: Session, post_id: int) -> AidPost:
    post = session.get(AidPost, post_id)
    if post is None:
        raise NotFound(_("That post does not exist (it may have been removed)."))
    return post


def get_open_post(session: Session, now: datetime, post_id: int) -> AidPost:
    post = session.get(AidPost, post_id)
    if post is None or not post.is_open(now):
        raise NotFound(_("That post is no longer on the board: it was taken up, withdrawn or has lapsed."))
    return post


def leave_message(session: Session, now: datetime, post: AidPost, text: str, contact_choice: str = KEPT) -> AidMessage:
    """A helper's answer. Without a choice, the helper's contact is kept: showing it takes their say-so."""
    if contact_choice not in CONTACT_CHOICES:
        raise Invalid(_("Please choose whether the person who posted may see how to reach you."), field="contact choice")
    if not post.is_open(now):
        raise Invalid(_("That post is no longer open, so the message was not sent."))
    if len(post.messages) >= MAX_MESSAGES_PER_POST:
        raise Invalid(_("This post has many messages waiting already; please ask at the bench."))
    text = clean_text(text, field="message", max_length=MAX_MESSAGE, multiline=True)
    if contact_choice == KEPT and (found := find_contact(text)):
        raise Invalid(_refused_contact(found, KEPT_BUT_WRITTEN), field="message")
    message = AidMessage(
        post=post,
        for_poster=receipt_keys.seal_for(post.poster_key, text),
        for_host=text if host_may_read(post, contact_choice) else None,
        contact_choice=contact_choice,
        created_at=now,
    )
    session.add(message)
    session.flush()
    return message


def post_for_receipt(session: Session, raw_code: str) -> PosterView:
    """The post a receipt code belongs to, with the messages only that code opens."""
    code = normalize_receipt_code(raw_code)
    key = receipt_keys.key_for(session, code) if code else None
    post = session.scalar(select(AidPost).where(AidPost.receipt_lookup == key.lookup,
                                                AidPost.poster_key == key.public)) if key else None
    if post is None:
        raise NotFound(
            _("No post has that receipt code. Check the code; finished posts are deleted after some days."),
            field="receipt code",
        )
    return PosterView(post, [(message, key.open(message.for_poster) or "") for message in post.messages])


def close_by_poster(session: Session, now: datetime, post: AidPost, status: str) -> None:
    if status not in POSTER_CLOSINGS:
        raise Invalid(_("You can mark your post as taken up or withdraw it."), field="status")
    if post.status != OPEN:
        raise Invalid(_("This post is already %(status)s.", status=STATUS_LABELS[post.status].lower()))
    post.status = status
    post.closed_at = now
    session.flush()


def hide(session: Session, now: datetime, post: AidPost) -> None:
    """The host takes a post off the board (spam, or something unsafe)."""
    if post.status != OPEN:
        # A taken or withdrawn post is already off the board; hiding it would
        # let "restore" put it back and would push back its purge.
        raise Invalid(_("This post is %(status)s, so it is not on the board.",
                        status=STATUS_LABELS[post.status].lower()))
    post.status = HIDDEN
    post.closed_at = now
    session.flush()


def restore(session: Session, now: datetime, post: AidPost) -> None:
    if post.status != HIDDEN:
        raise Invalid(_("Only a hidden post can be restored."))
    post.status = OPEN if post.available_until > now else LAPSED
    post.closed_at = None if post.status == OPEN else now
    session.flush()


def mark_passed_on(session: Session, now: datetime, message_id: int) -> AidMessage:
    message = session.get(AidMessage, message_id)
    if message is None:
        raise NotFound(_("That message does not exist."))
    if not message.post.contact:
        # Nothing to pass on: the poster reads their messages with the receipt code.
        raise Invalid(_("The poster left no way to reach them, so there is nothing to pass on: they read their "
                        "messages with their receipt code."))
    message.passed_on_at = message.passed_on_at or now
    session.flush()
    return message


def moderation_queue(session: Session) -> list[AidPost]:
    """Every post still kept, those with unanswered messages first."""
    posts = list(
        session.scalars(select(AidPost).options(joinedload(AidPost.area), selectinload(AidPost.messages))
                        .order_by(AidPost.created_at.desc()))
    )
    return sorted(posts, key=lambda p: not any(m.passed_on_at is None for m in p.messages))


def lapse_due(session: Session, now: datetime) -> int:
    """Mark open posts past their date as lapsed (the scheduled job)."""
    due = list(session.scalars(select(AidPost).where(AidPost.status == OPEN, AidPost.available_until <= now)))
    for post in due:
        post.status = LAPSED
        post.closed_at = now
    session.flush()
    return len(due)


def purge_finished(session: Session, now: datetime, retention_days: int, limit: int | None = None) -> int:
    """Delete posts closed more than ``retention_days`` ago, with their messages (at most ``limit``, oldest first)."""
    cutoff = now - timedelta(days=retention_days)
    due = (select(AidPost.id).where(AidPost.status != OPEN, AidPost.closed_at <= cutoff)
           .order_by(AidPost.closed_at).limit(limit))
    ids = list(session.scalars(due))
    if ids:
        session.execute(delete(AidMessage).where(AidMessage.post_id.in_(ids)))
        session.execute(delete(AidPost).where(AidPost.id.in_(ids)))
    session.flush()
    return len(ids)

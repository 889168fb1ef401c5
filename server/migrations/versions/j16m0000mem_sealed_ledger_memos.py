"""ledger memos between two members sealed to their own keys (issue 16)

Revision ID: j16m0000mem
Revises: i17f0000fed
Create Date: 2026-12-06 21:00:00

Two columns added in place (nothing rebuilt). A memo already on the card
between two members is sealed to whichever of the two has a key and taken
out of the plain column (every connection of the hub runs with
secure_delete, so SQLite zeroes the old words); with no key on either side
it cannot be kept for them and is cleared.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'j16m0000mem'
down_revision = 'i17f0000fed'
branch_labels = None
depends_on = None

TABLES = ("ledger_entry", "ledger_transfer")


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, recreate="never") as batch_op:
            batch_op.add_column(sa.Column('sealed_memo', sa.Text(), nullable=True))
    _seal_memos_between_members(op.get_bind())


def _seal_memos_between_members(conn):
    from server.domain.sealing import seal_to_members

    for table in TABLES:
        rows = conn.execute(sa.text(
            f'SELECT t.id, t.memo, g.member_id, r.member_id FROM "{table}" t '
            'JOIN ledger_account g ON g.id = t.giver_id JOIN ledger_account r ON r.id = t.receiver_id '
            "WHERE g.kind = 'member' AND r.kind = 'member' AND t.memo <> ''")).all()
        for row_id, memo, giver, receiver in rows:
            keys = conn.execute(sa.text("SELECT public_key FROM member_key WHERE member_id IN (:g, :r)"),
                                {"g": giver or -1, "r": receiver or -1}).scalars().all()
            sealed = seal_to_members(keys, memo)
            conn.execute(sa.text(f'UPDATE "{table}" SET memo = \'\', sealed_memo = :sealed WHERE id = :id'),
                         {"sealed": None if sealed is None else str(sealed), "id": row_id})


def downgrade():
    # Sealed memos stay sealed: opening them needs a member's password, which no migration has.
    for table in TABLES:
        with op.batch_alter_table(table, recreate="never") as batch_op:
            batch_op.drop_column('sealed_memo')

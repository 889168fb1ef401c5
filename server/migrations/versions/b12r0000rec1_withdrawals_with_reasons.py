"""withdrawals from the public log carry who and why (issue 12)

Revision ID: b12r0000rec1
Revises: a12m0000mnd1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b12r0000rec1'
down_revision = 'a12m0000mnd1'
branch_labels = None
depends_on = None


# The kinds the public log lists (server.domain.patrol.KIND_LABELS), as they were when this was written.
PUBLIC_KINDS = ("shift_start", "shift_end", "check_in", "incident")


def upgrade():
    with op.batch_alter_table('log_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('withdrawn_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_by', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('withdrawal_reason', sa.Text(), nullable=True))

    # Entries withdrawn before the hub kept who and why: they become gaps on the
    # public log too, saying honestly that nobody knows more.
    log_entry = sa.table('log_entry', sa.column('public', sa.Boolean()), sa.column('drill', sa.Boolean()),
                         sa.column('kind', sa.String()), sa.column('withdrawn_by', sa.String()),
                         sa.column('withdrawal_reason', sa.Text()))
    op.execute(
        log_entry.update()
        .where(log_entry.c.public == sa.false(), log_entry.c.drill == sa.false(), log_entry.c.kind.in_(PUBLIC_KINDS))
        .values(withdrawn_by='a role-holder', withdrawal_reason='withdrawn before the hub kept who and why')
    )


def downgrade():
    with op.batch_alter_table('log_entry', schema=None) as batch_op:
        batch_op.drop_column('withdrawal_reason')
        batch_op.drop_column('withdrawn_by')
        batch_op.drop_column('withdrawn_at')

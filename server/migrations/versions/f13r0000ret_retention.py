"""log notes and shifts expire (issue 13)

Revision ID: f13r0000ret
Revises: f13a0000aid
Create Date: 2026-12-06 08:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13r0000ret'
down_revision = 'f13a0000aid'
branch_labels = None
depends_on = None


def upgrade():
    # Shifts older than the log's retention, reduced to counts for the lunar
    # audit (server/domain/audit.py's ShiftTally). The old rows themselves are
    # reduced by the worker's expire-patrol-log job, not here: it runs within
    # the hour of the upgrade, and a migration should not need the moon.
    op.create_table('shift_tally',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('area', sa.String(length=40), nullable=False),
    sa.Column('shifts', sa.Integer(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shift_tally')),
    sa.UniqueConstraint('cycle', 'day', 'area', name=op.f('uq_shift_tally_cycle'))
    )


def downgrade():
    op.drop_table('shift_tally')

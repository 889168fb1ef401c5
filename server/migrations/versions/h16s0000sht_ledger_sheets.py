"""the ledger's printed sheets and their hash chain (issue 16)

Revision ID: h16s0000sht
Revises: h16a0000aly
Create Date: 2026-12-06 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16s0000sht'
down_revision = 'h16a0000aly'
branch_labels = None
depends_on = None


def upgrade():
    # One row a printed sheet, written once (server/domain/ledger_sheets.py):
    # only reprinted_at moves after. Nothing points at it.
    op.create_table('ledger_sheet',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=False),
    sa.Column('previous_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('entry_count', sa.Integer(), nullable=False),
    sa.Column('printed_at', sa.DateTime(), nullable=False),
    sa.Column('reprinted_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_sheet')),
    sa.UniqueConstraint('hash', name=op.f('uq_ledger_sheet_hash')),
    sa.UniqueConstraint('period', name=op.f('uq_ledger_sheet_period'))
    )


def downgrade():
    op.drop_table('ledger_sheet')

"""stewards choose whether the public sees their handle (issue 13)

Revision ID: f13p0000pub
Revises: f13s0000seal
Create Date: 2026-12-06 08:40:00

Public pages count stewards on patrol by published area; a handle shows on
the bench page and the public log only for a member who chose it. Everyone
starts hidden, those who were shown by handle before this upgrade too: only
the steward can consent to it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13p0000pub'
down_revision = 'f13s0000seal'
branch_labels = None
depends_on = None


def upgrade():
    # Added in place, never by rebuilding the table: with foreign keys on, dropping the old member table
    # would cascade to every role, shift and session of every member. SQLite adds a column in place only
    # with a constant default, so false is written '0' (which PostgreSQL reads as false as well).
    with op.batch_alter_table('member', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('show_handle', sa.Boolean(), server_default='0', nullable=False))


def downgrade():
    # In place too (SQLite 3.35 and later drop a column without rebuilding the table), for the same reason.
    with op.batch_alter_table('member', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('show_handle')

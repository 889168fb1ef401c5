"""years of data: the indexes scheduled jobs and pages need at 1M log rows (issue 14)

Revision ID: g14i0000idx
Revises: f13k0000rcp
Create Date: 2026-12-06 11:20:00

Every index is created in place (no table is rebuilt: other tables point at
these, and a rebuild under foreign keys would cascade deletes).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'g14i0000idx'
down_revision = 'f13k0000rcp'
branch_labels = None
depends_on = None

# The entries the retention has still to reduce (server/domain/retention.py UNREDUCED).
UNREDUCED = "member_id IS NOT NULL OR shift_id IS NOT NULL OR note IS NOT NULL OR place IS NOT NULL"


def upgrade():
    # The overdue check reads only the shifts on patrol; deleting a shift sets its entries' shift_id to NULL.
    op.create_index('ix_log_entry_shift_id', 'log_entry', ['shift_id'], unique=False)
    # The hourly retention reads the last month or so of entries, not years of them.
    op.create_index('ix_log_entry_unreduced_at', 'log_entry', ['at'], unique=False, sqlite_where=sa.text(UNREDUCED),
                    postgresql_where=sa.text(UNREDUCED))
    # Purging an alert or a radio message sets these to NULL: found by index, not by reading the table.
    op.create_index('ix_shift_overdue_alert_id', 'shift', ['overdue_alert_id'], unique=False)
    op.create_index('ix_airtime_use_message_id', 'airtime_use', ['message_id'], unique=False)


def downgrade():
    op.drop_index('ix_airtime_use_message_id', table_name='airtime_use')
    op.drop_index('ix_shift_overdue_alert_id', table_name='shift')
    op.drop_index('ix_log_entry_unreduced_at', table_name='log_entry')
    op.drop_index('ix_log_entry_shift_id', table_name='log_entry')

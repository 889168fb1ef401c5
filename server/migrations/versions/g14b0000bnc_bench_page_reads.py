"""the bench page reads what it shows in few cheap queries (issue 14)

Revision ID: g14b0000bnc
Revises: g14i0000idx
Create Date: 2026-12-06 11:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'g14b0000bnc'
down_revision = 'g14i0000idx'
branch_labels = None
depends_on = None


def upgrade():
    # The bench page's count of open aid posts reads this index alone (status, then
    # the date it lapses), never the rows. An index is made in place: no table rebuild.
    op.create_index('ix_aid_post_status_available_until', 'aid_post', ['status', 'available_until'], unique=False)


def downgrade():
    op.drop_index('ix_aid_post_status_available_until', table_name='aid_post')

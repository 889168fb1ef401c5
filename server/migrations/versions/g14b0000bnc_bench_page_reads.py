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
    pass


def downgrade():
    pass

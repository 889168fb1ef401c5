"""years of data: the indexes scheduled jobs and pages need at 1M log rows (issue 14)

Revision ID: g14i0000idx
Revises: f13k0000rcp
Create Date: 2026-12-06 11:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'g14i0000idx'
down_revision = 'f13k0000rcp'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

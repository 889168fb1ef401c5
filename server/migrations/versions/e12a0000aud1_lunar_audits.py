"""the public audit each lunar cycle (issue 12)

Revision ID: e12a0000aud1
Revises: d12c0000cmp1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e12a0000aud1'
down_revision = 'd12c0000cmp1'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

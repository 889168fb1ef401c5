"""complaints about the patrol (issue 12)

Revision ID: d12c0000cmp1
Revises: c12v0000cmp1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd12c0000cmp1'
down_revision = 'c12v0000cmp1'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

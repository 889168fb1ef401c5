"""the compact has versions (issue 12)

Revision ID: c12v0000cmp1
Revises: b12r0000rec1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c12v0000cmp1'
down_revision = 'b12r0000rec1'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

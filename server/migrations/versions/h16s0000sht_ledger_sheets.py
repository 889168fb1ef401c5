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
    pass


def downgrade():
    pass

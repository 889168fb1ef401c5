"""federation between benches: members, signed messages in and out (issue 17)

Revision ID: i17f0000fed
Revises: h16s0000sht
Create Date: 2026-12-06 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'i17f0000fed'
down_revision = 'h16s0000sht'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

"""the mutual-credit ledger and the bail fund (issue 16)

Revision ID: h16l0000led
Revises: g14b0000bnc
Create Date: 2026-12-06 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16l0000led'
down_revision = 'g14b0000bnc'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

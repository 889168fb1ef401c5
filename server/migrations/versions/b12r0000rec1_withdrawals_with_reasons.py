"""withdrawals from the public log carry who and why (issue 12)

Revision ID: b12r0000rec1
Revises: a12m0000mnd1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b12r0000rec1'
down_revision = 'a12m0000mnd1'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

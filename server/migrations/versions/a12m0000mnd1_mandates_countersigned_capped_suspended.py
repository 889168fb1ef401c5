"""mandates: countersigned, capped, suspended (issue 12)

Revision ID: a12m0000mnd1
Revises: 09617f50aeec
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a12m0000mnd1'
down_revision = '09617f50aeec'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

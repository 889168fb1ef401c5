"""allies and their vows (issue 16)

Revision ID: h16a0000aly
Revises: h16t0000tsk
Create Date: 2026-12-06 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16a0000aly'
down_revision = 'h16t0000tsk'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

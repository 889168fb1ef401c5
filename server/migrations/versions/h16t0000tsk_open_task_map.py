"""the open task map (issue 16)

Revision ID: h16t0000tsk
Revises: h16l0000led
Create Date: 2026-12-06 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16t0000tsk'
down_revision = 'h16l0000led'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

"""aid replies: helpers choose what the poster sees (issue 13)

Revision ID: f13a0000aid
Revises: f13p0000pub
Create Date: 2026-12-06 08:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13a0000aid'
down_revision = 'f13p0000pub'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

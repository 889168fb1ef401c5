"""stewards choose whether the public sees their handle (issue 13)

Revision ID: f13p0000pub
Revises: f13s0000seal
Create Date: 2026-12-06 08:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13p0000pub'
down_revision = 'f13s0000seal'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

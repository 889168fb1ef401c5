"""sealed storage: member keys, vault keys and grants (issue 13)

Revision ID: f13s0000seal
Revises: e12a0000aud1
Create Date: 2026-12-06 08:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13s0000seal'
down_revision = 'e12a0000aud1'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

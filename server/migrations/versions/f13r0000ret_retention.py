"""log notes and shifts expire (issue 13)

Revision ID: f13r0000ret
Revises: f13a0000aid
Create Date: 2026-12-06 08:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13r0000ret'
down_revision = 'f13a0000aid'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass

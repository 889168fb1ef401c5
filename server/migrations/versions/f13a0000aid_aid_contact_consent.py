"""aid replies: helpers choose what the poster sees (issue 13)

Revision ID: f13a0000aid
Revises: f13p0000pub
Create Date: 2026-12-06 08:40:00

A helper answering an aid post now chooses whether the poster may see how to
reach them ("shown") or not ("kept", and then the message may hold no number,
email or handle). Messages already left were written under a form that asked
for a way to reach the helper and said the poster reads it: they are "shown".
New rows get no default: the hub always writes the helper's own choice.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13a0000aid'
down_revision = 'f13p0000pub'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('aid_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_choice', sa.String(length=8), nullable=True))
    op.execute("UPDATE aid_message SET contact_choice = 'shown'")
    with op.batch_alter_table('aid_message', schema=None) as batch_op:
        batch_op.alter_column('contact_choice', existing_type=sa.String(length=8), nullable=False)


def downgrade():
    with op.batch_alter_table('aid_message', schema=None) as batch_op:
        batch_op.drop_column('contact_choice')

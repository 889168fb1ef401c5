"""the public audit each lunar cycle (issue 12)

Revision ID: e12a0000aud1
Revises: d12c0000cmp1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e12a0000aud1'
down_revision = 'd12c0000cmp1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('lunar_audit',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('frozen_at', sa.DateTime(), nullable=True),
    sa.Column('facts', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lunar_audit'))
    )
    op.create_table('audit_revision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('decision', sa.String(length=300), nullable=False),
    sa.Column('written_at', sa.DateTime(), nullable=False),
    sa.Column('written_by', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['lunar_audit.id'], name=op.f('fk_audit_revision_audit_id_lunar_audit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_revision')),
    sa.UniqueConstraint('audit_id', 'version', name=op.f('uq_audit_revision_audit_id'))
    )
    with op.batch_alter_table('audit_revision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_revision_audit_id'), ['audit_id'], unique=False)

    # When a mediator first took a request (the audit's "time to a mediator").
    # Requests taken before this version left no such time: they stay NULL,
    # and the audit measures only what it can.
    with op.batch_alter_table('mediation_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taken_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('mediation_request', schema=None) as batch_op:
        batch_op.drop_column('taken_at')

    with op.batch_alter_table('audit_revision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_revision_audit_id'))

    op.drop_table('audit_revision')
    op.drop_table('lunar_audit')

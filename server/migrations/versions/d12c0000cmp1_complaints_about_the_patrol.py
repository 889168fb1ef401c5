"""complaints about the patrol (issue 12)

Revision ID: d12c0000cmp1
Revises: c12v0000cmp1
Create Date: 2026-12-06 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd12c0000cmp1'
down_revision = 'c12v0000cmp1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('complaint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receipt_code', sa.String(length=11), nullable=True),
    sa.Column('what', sa.Text(), nullable=True),
    sa.Column('about', sa.String(length=8), nullable=True),
    sa.Column('about_role', sa.String(length=16), nullable=True),
    sa.Column('about_member_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('taken_by_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('purged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['about_member_id'], ['member.id'], name=op.f('fk_complaint_about_member_id_member'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['taken_by_id'], ['member.id'], name=op.f('fk_complaint_taken_by_id_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint')),
    sa.UniqueConstraint('receipt_code', name=op.f('uq_complaint_receipt_code'))
    )
    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_closed_at'), ['closed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaint_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaint_status'), ['status'], unique=False)

    op.create_table('complaint_exclusion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('complaint_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaint.id'], name=op.f('fk_complaint_exclusion_complaint_id_complaint'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_complaint_exclusion_member_id_member'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint_exclusion')),
    sa.UniqueConstraint('complaint_id', 'member_id', name=op.f('uq_complaint_exclusion_complaint_id'))
    )
    with op.batch_alter_table('complaint_exclusion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_exclusion_complaint_id'), ['complaint_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaint_exclusion_member_id'), ['member_id'], unique=False)


def downgrade():
    with op.batch_alter_table('complaint_exclusion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_exclusion_member_id'))
        batch_op.drop_index(batch_op.f('ix_complaint_exclusion_complaint_id'))

    op.drop_table('complaint_exclusion')
    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_status'))
        batch_op.drop_index(batch_op.f('ix_complaint_created_at'))
        batch_op.drop_index(batch_op.f('ix_complaint_closed_at'))

    op.drop_table('complaint')

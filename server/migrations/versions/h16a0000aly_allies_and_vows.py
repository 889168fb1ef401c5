"""allies and their vows (issue 16)

Revision ID: h16a0000aly
Revises: h16t0000tsk
Create Date: 2026-12-06 17:20:00

Three new tables; nothing existing is rebuilt (vows point at area with SET NULL).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16a0000aly'
down_revision = 'h16t0000tsk'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ally',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('place', sa.String(length=120), nullable=False),
    sa.Column('endorsed_on', sa.Date(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_by', sa.String(length=24), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ally'))
    )
    op.create_table('ally_vow',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ally_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('hours', sa.String(length=120), nullable=False),
    sa.Column('crisis_only', sa.Boolean(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=True),
    sa.Column('decision', sa.Text(), nullable=False),
    sa.Column('decided_on', sa.Date(), nullable=False),
    sa.Column('decision_place', sa.String(length=80), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_by', sa.String(length=24), nullable=False),
    sa.Column('countersigned_at', sa.DateTime(), nullable=True),
    sa.Column('countersigned_by', sa.String(length=24), nullable=True),
    sa.Column('replaces_id', sa.Integer(), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.Column('withdrawn_by', sa.String(length=24), nullable=True),
    sa.Column('withdrawal_reason', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['ally_id'], ['ally.id'], name=op.f('fk_ally_vow_ally_id_ally'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['area_id'], ['area.id'], name=op.f('fk_ally_vow_area_id_area'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['replaces_id'], ['ally_vow.id'], name=op.f('fk_ally_vow_replaces_id_ally_vow'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ally_vow'))
    )
    op.create_index(op.f('ix_ally_vow_ally_id'), 'ally_vow', ['ally_id'], unique=False)
    op.create_index(op.f('ix_ally_vow_countersigned_at'), 'ally_vow', ['countersigned_at'], unique=False)
    op.create_table('vow_fulfilment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vow_id', sa.Integer(), nullable=False),
    sa.Column('fulfilled_on', sa.Date(), nullable=False),
    sa.Column('line', sa.String(length=140), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_by', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['vow_id'], ['ally_vow.id'], name=op.f('fk_vow_fulfilment_vow_id_ally_vow'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vow_fulfilment'))
    )
    op.create_index(op.f('ix_vow_fulfilment_fulfilled_on'), 'vow_fulfilment', ['fulfilled_on'], unique=False)
    op.create_index(op.f('ix_vow_fulfilment_vow_id'), 'vow_fulfilment', ['vow_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_vow_fulfilment_vow_id'), table_name='vow_fulfilment')
    op.drop_index(op.f('ix_vow_fulfilment_fulfilled_on'), table_name='vow_fulfilment')
    op.drop_table('vow_fulfilment')
    op.drop_index(op.f('ix_ally_vow_countersigned_at'), table_name='ally_vow')
    op.drop_index(op.f('ix_ally_vow_ally_id'), table_name='ally_vow')
    op.drop_table('ally_vow')
    op.drop_table('ally')

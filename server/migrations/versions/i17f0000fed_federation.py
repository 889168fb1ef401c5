"""federation between benches: members, signed messages in and out (issue 17)

Revision ID: i17f0000fed
Revises: h16s0000sht
Create Date: 2026-12-06 18:00:00

Nine new tables; nothing existing is rebuilt (roaming_consent points at member with CASCADE).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'i17f0000fed'
down_revision = 'h16s0000sht'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('federation_bench',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('federation', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('broker_url', sa.String(length=300), nullable=False),
    sa.Column('broker_username', sa.String(length=80), nullable=True),
    sa.Column('broker_password_file', sa.String(length=300), nullable=True),
    sa.Column('public_key', sa.String(length=64), nullable=False),
    sa.Column('joined_at', sa.DateTime(), nullable=False),
    sa.Column('hub_node', sa.BigInteger(), nullable=True),
    sa.Column('hub_key', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_bench'))
    )
    op.create_table('federation_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('public_key', sa.String(length=64), nullable=False),
    sa.Column('first_heard_at', sa.DateTime(), nullable=False),
    sa.Column('areas', sa.Text(), nullable=True),
    sa.Column('neighbour_areas', sa.Text(), nullable=True),
    sa.Column('hub_node', sa.BigInteger(), nullable=True),
    sa.Column('hub_key', sa.String(length=64), nullable=True),
    sa.Column('heard_key', sa.String(length=64), nullable=True),
    sa.Column('heard_key_at', sa.DateTime(), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(), nullable=True),
    sa.Column('confirmed_by', sa.String(length=24), nullable=True),
    sa.Column('trusted_at', sa.DateTime(), nullable=True),
    sa.Column('trusted_by', sa.String(length=24), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(length=24), nullable=True),
    sa.Column('revoke_reason', sa.String(length=300), nullable=True),
    sa.Column('last_message_at', sa.DateTime(), nullable=True),
    sa.Column('last_kind', sa.String(length=16), nullable=True),
    sa.Column('arrested', sa.Integer(), server_default='0', nullable=False),
    sa.Column('released', sa.Integer(), server_default='0', nullable=False),
    sa.Column('counts_at', sa.DateTime(), nullable=True),
    sa.Column('audit_cycle', sa.Integer(), nullable=True),
    sa.Column('audit_totals', sa.Text(), nullable=True),
    sa.Column('allies_at', sa.DateTime(), nullable=True),
    sa.Column('roamers_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_member')),
    sa.UniqueConstraint('name', name=op.f('uq_federation_member_name'))
    )
    op.create_index(op.f('ix_federation_member_trusted_at'), 'federation_member', ['trusted_at'], unique=False)
    op.create_table('federation_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('recipients', sa.Text(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('mesh_sent_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_federation_outbox_dedupe_key')),
    sa.UniqueConstraint('message_id', name=op.f('uq_federation_outbox_message_id'))
    )
    op.create_index(op.f('ix_federation_outbox_created_at'), 'federation_outbox', ['created_at'], unique=False)
    op.create_index(op.f('ix_federation_outbox_sent_at'), 'federation_outbox', ['sent_at'], unique=False)
    op.create_table('federation_received',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sender', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('via', sa.String(length=8), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_received')),
    sa.UniqueConstraint('sender', 'message_id', name='uq_federation_received_sender_message')
    )
    op.create_index(op.f('ix_federation_received_received_at'), 'federation_received', ['received_at'],
                    unique=False)
    op.create_table('federation_drop',
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('last_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('reason', name=op.f('pk_federation_drop'))
    )
    op.create_table('federation_alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bench', sa.String(length=40), nullable=False),
    sa.Column('code', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('area', sa.String(length=40), nullable=False),
    sa.Column('raised_at', sa.DateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('on_air', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_alert')),
    sa.UniqueConstraint('bench', 'code', 'raised_at', name='uq_federation_alert_bench_code')
    )
    op.create_index(op.f('ix_federation_alert_state'), 'federation_alert', ['state'], unique=False)
    op.create_table('federation_ally',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bench', sa.String(length=40), nullable=False),
    sa.Column('ally', sa.String(length=80), nullable=False),
    sa.Column('place', sa.String(length=120), nullable=False),
    sa.Column('vow', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('hours', sa.String(length=120), nullable=False),
    sa.Column('crisis_only', sa.Boolean(), nullable=False),
    sa.Column('area', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_ally'))
    )
    op.create_index(op.f('ix_federation_ally_bench'), 'federation_ally', ['bench'], unique=False)
    op.create_table('federation_roamer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bench', sa.String(length=40), nullable=False),
    sa.Column('handle', sa.String(length=24), nullable=False),
    sa.Column('node_num', sa.BigInteger(), nullable=False),
    sa.Column('radio_key', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_federation_roamer'))
    )
    op.create_index(op.f('ix_federation_roamer_bench'), 'federation_roamer', ['bench'], unique=False)
    op.create_index(op.f('ix_federation_roamer_node_num'), 'federation_roamer', ['node_num'], unique=False)
    op.create_table('roaming_consent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('given_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_roaming_consent_member_id_member'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roaming_consent')),
    sa.UniqueConstraint('member_id', name=op.f('uq_roaming_consent_member_id'))
    )


def downgrade():
    op.drop_table('roaming_consent')
    op.drop_index(op.f('ix_federation_roamer_node_num'), table_name='federation_roamer')
    op.drop_index(op.f('ix_federation_roamer_bench'), table_name='federation_roamer')
    op.drop_table('federation_roamer')
    op.drop_index(op.f('ix_federation_ally_bench'), table_name='federation_ally')
    op.drop_table('federation_ally')
    op.drop_index(op.f('ix_federation_alert_state'), table_name='federation_alert')
    op.drop_table('federation_alert')
    op.drop_table('federation_drop')
    op.drop_index(op.f('ix_federation_received_received_at'), table_name='federation_received')
    op.drop_table('federation_received')
    op.drop_index(op.f('ix_federation_outbox_sent_at'), table_name='federation_outbox')
    op.drop_index(op.f('ix_federation_outbox_created_at'), table_name='federation_outbox')
    op.drop_table('federation_outbox')
    op.drop_index(op.f('ix_federation_member_trusted_at'), table_name='federation_member')
    op.drop_table('federation_member')
    op.drop_table('federation_bench')

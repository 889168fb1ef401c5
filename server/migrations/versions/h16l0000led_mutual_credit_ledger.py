"""the mutual-credit ledger and the bail fund (issue 16)

Revision ID: h16l0000led
Revises: g14b0000bnc
Create Date: 2026-12-06 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16l0000led'
down_revision = 'g14b0000bnc'
branch_labels = None
depends_on = None


def upgrade():
    # New tables only: nothing existing is rebuilt (with foreign keys on, a rebuilt member table would
    # cascade). Balances are whole credits; an entry is never updated or deleted (server/domain/ledger.py).
    op.create_table('ledger_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=40), nullable=True),
    sa.Column('name_key', sa.String(length=40), nullable=True),
    sa.Column('soft_limit', sa.Integer(), server_default='0', nullable=False),
    sa.Column('hard_limit', sa.Integer(), nullable=True),
    sa.Column('balance', sa.Integer(), server_default='0', nullable=False),
    # Running totals of what the account gave, kept with each entry (the public page reads them, not the entries).
    sa.Column('entries_given', sa.Integer(), server_default='0', nullable=False),
    sa.Column('credits_given', sa.Integer(), server_default='0', nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('in_force_at', sa.DateTime(), nullable=True),
    sa.Column('pays_patrol_hours', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('earns_patrol_credit', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('balance_public', sa.Boolean(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_ledger_account_member_id_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_account')),
    sa.UniqueConstraint('member_id', name=op.f('uq_ledger_account_member_id')),
    sa.UniqueConstraint('name_key', name=op.f('uq_ledger_account_name_key'))
    )

    op.create_table('ledger_keeper',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('named_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_account.id'], name=op.f('fk_ledger_keeper_account_id_ledger_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_ledger_keeper_member_id_member'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_keeper')),
    sa.UniqueConstraint('account_id', 'member_id', name=op.f('uq_ledger_keeper_account_id'))
    )
    with op.batch_alter_table('ledger_keeper', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_keeper_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_keeper_member_id'), ['member_id'], unique=False)

    op.create_table('ledger_decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('opens', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('soft_limit', sa.Integer(), nullable=False),
    sa.Column('hard_limit', sa.Integer(), nullable=False),
    sa.Column('keepers', sa.Text(), nullable=True),
    sa.Column('decided_on', sa.Date(), nullable=False),
    sa.Column('decision_place', sa.String(length=80), nullable=False),
    sa.Column('decision', sa.Text(), nullable=False),
    sa.Column('asked_at', sa.DateTime(), nullable=False),
    sa.Column('asked_by_id', sa.Integer(), nullable=True),
    sa.Column('countersigned_at', sa.DateTime(), nullable=True),
    sa.Column('countersigned_by_id', sa.Integer(), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_account.id'], name=op.f('fk_ledger_decision_account_id_ledger_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['asked_by_id'], ['member.id'], name=op.f('fk_ledger_decision_asked_by_id_member'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['countersigned_by_id'], ['member.id'], name=op.f('fk_ledger_decision_countersigned_by_id_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_decision'))
    )
    with op.batch_alter_table('ledger_decision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_decision_account_id'), ['account_id'], unique=False)

    op.create_table('ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('giver_id', sa.Integer(), nullable=False),
    sa.Column('receiver_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('memo', sa.String(length=120), server_default='', nullable=False),
    sa.Column('anonymous', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['giver_id'], ['ledger_account.id'], name=op.f('fk_ledger_entry_giver_id_ledger_account')),
    sa.ForeignKeyConstraint(['receiver_id'], ['ledger_account.id'], name=op.f('fk_ledger_entry_receiver_id_ledger_account')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_entry.id'], name=op.f('fk_ledger_entry_reverses_id_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entry')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_ledger_entry_reverses_id'))
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entry_giver_id'), ['giver_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entry_receiver_id'), ['receiver_id'], unique=False)

    op.create_table('ledger_transfer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('giver_id', sa.Integer(), nullable=False),
    sa.Column('receiver_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('memo', sa.String(length=120), server_default='', nullable=False),
    sa.Column('anonymous', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('proposed_at', sa.DateTime(), nullable=False),
    sa.Column('proposed_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('refusal', sa.String(length=300), nullable=True),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by_id'], ['member.id'], name=op.f('fk_ledger_transfer_decided_by_id_member'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_ledger_transfer_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['giver_id'], ['ledger_account.id'], name=op.f('fk_ledger_transfer_giver_id_ledger_account')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['member.id'], name=op.f('fk_ledger_transfer_proposed_by_id_member'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['receiver_id'], ['ledger_account.id'], name=op.f('fk_ledger_transfer_receiver_id_ledger_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transfer')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_ledger_transfer_entry_id'))
    )
    with op.batch_alter_table('ledger_transfer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_transfer_giver_id'), ['giver_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transfer_receiver_id'), ['receiver_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transfer_state'), ['state'], unique=False)

    # The bail fund's totals by month, kept with each of its entries (the public page reads a dozen rows).
    op.create_table('ledger_fund_month',
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('contributions', sa.Integer(), server_default='0', nullable=False),
    sa.Column('payouts', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('month', name=op.f('pk_ledger_fund_month'))
    )


def downgrade():
    op.drop_table('ledger_fund_month')
    with op.batch_alter_table('ledger_transfer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_transfer_state'))
        batch_op.drop_index(batch_op.f('ix_ledger_transfer_receiver_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_transfer_giver_id'))
    op.drop_table('ledger_transfer')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_receiver_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entry_giver_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entry_at'))
    op.drop_table('ledger_entry')
    with op.batch_alter_table('ledger_decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_decision_account_id'))
    op.drop_table('ledger_decision')
    with op.batch_alter_table('ledger_keeper', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_keeper_member_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_keeper_account_id'))
    op.drop_table('ledger_keeper')
    op.drop_table('ledger_account')

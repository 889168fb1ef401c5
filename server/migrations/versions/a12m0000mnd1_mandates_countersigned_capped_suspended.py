"""mandates: countersigned, capped, suspended (issue 12)

Revision ID: a12m0000mnd1
Revises: 09617f50aeec
Create Date: 2026-12-06 06:45:00

Every role assignment and renewal gains the parts of its assembly decision
(day, meeting or place), who asked for it and who countersigned it, and an
assignment the state of a recall. Roles and renewals that existed before
mandates were countersigned count as countersigned when they were made, so
nobody loses a role by this upgrade.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a12m0000mnd1'
down_revision = '09617f50aeec'
branch_labels = None
depends_on = None


def _member_fk(batch_op, table, column):
    batch_op.create_foreign_key(batch_op.f(f'fk_{table}_{column}_member'), 'member', [column], ['id'],
                                ondelete='SET NULL')


def upgrade():
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.add_column(sa.Column('appears_as_role', sa.Boolean(), server_default='0', nullable=False))

    with op.batch_alter_table('role_assignment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decided_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('decision_place', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('granted_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('countersigned_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('countersigned_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('suspension_asked_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('suspension_asked_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('suspension_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('suspended_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('suspended_by_id', sa.Integer(), nullable=True))
        for column in ('granted_by_id', 'countersigned_by_id', 'suspension_asked_by_id', 'suspended_by_id'):
            _member_fk(batch_op, 'role_assignment', column)

    with op.batch_alter_table('role_renewal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decided_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('decision_place', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('requested_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('countersigned_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('countersigned_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', sa.DateTime(), nullable=True))
        for column in ('requested_by_id', 'countersigned_by_id'):
            _member_fk(batch_op, 'role_renewal', column)

    # What was in force before stays in force: countersigned when it was made.
    op.execute("UPDATE role_assignment SET countersigned_at = granted_at")
    op.execute("UPDATE role_renewal SET countersigned_at = renewed_at")


def downgrade():
    # A pending grant or renewal, or a suspended role, would open everything
    # again on the old schema: pending grants are dropped and suspended roles
    # end, as the old hub could not keep either apart from a role in force.
    op.execute("DELETE FROM role_renewal WHERE countersigned_at IS NULL")
    op.execute("DELETE FROM role_assignment WHERE countersigned_at IS NULL")
    op.execute("UPDATE role_assignment SET revoked_at = suspended_at "
               "WHERE suspended_at IS NOT NULL AND revoked_at IS NULL")

    with op.batch_alter_table('role_renewal', schema=None) as batch_op:
        for column in ('countersigned_by_id', 'requested_by_id'):
            batch_op.drop_constraint(batch_op.f(f'fk_role_renewal_{column}_member'), type_='foreignkey')
        for column in ('withdrawn_at', 'countersigned_by_id', 'countersigned_at', 'requested_by_id',
                       'decision_place', 'decided_on'):
            batch_op.drop_column(column)

    with op.batch_alter_table('role_assignment', schema=None) as batch_op:
        for column in ('suspended_by_id', 'suspension_asked_by_id', 'countersigned_by_id', 'granted_by_id'):
            batch_op.drop_constraint(batch_op.f(f'fk_role_assignment_{column}_member'), type_='foreignkey')
        for column in ('suspended_by_id', 'suspended_at', 'suspension_reason', 'suspension_asked_by_id',
                       'suspension_asked_at', 'countersigned_by_id', 'countersigned_at', 'granted_by_id',
                       'decision_place', 'decided_on'):
            batch_op.drop_column(column)

    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.drop_column('appears_as_role')

"""the open task map (issue 16)

Revision ID: h16t0000tsk
Revises: h16l0000led
Create Date: 2026-12-06 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'h16t0000tsk'
down_revision = 'h16l0000led'
branch_labels = None
depends_on = None


def upgrade():
    # A new table, pointing at area, member and aid_post: nothing points at it, nothing is rebuilt.
    op.create_table(
        'task',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=8), nullable=False),
        sa.Column('title', sa.String(length=120), nullable=False),
        sa.Column('done_means', sa.String(length=300), nullable=False),
        sa.Column('area_id', sa.Integer(), nullable=True),
        sa.Column('starts_at', sa.DateTime(), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=False),
        sa.Column('public', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('taken_by_id', sa.Integer(), nullable=True),
        sa.Column('taken_at', sa.DateTime(), nullable=True),
        sa.Column('taken_via', sa.String(length=8), nullable=True),
        sa.Column('closed_at', sa.DateTime(), nullable=True),
        sa.Column('closed_by_id', sa.Integer(), nullable=True),
        sa.Column('result', sa.Text(), nullable=True),
        sa.Column('account', sa.Text(), nullable=True),
        sa.Column('account_at', sa.DateTime(), nullable=True),
        sa.Column('aid_post_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['area_id'], ['area.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['created_by_id'], ['member.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['taken_by_id'], ['member.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['closed_by_id'], ['member.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['aid_post_id'], ['aid_post.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_task_code', 'task', ['code'], unique=False)
    op.create_index('ix_task_closed_at', 'task', ['closed_at'], unique=False)
    # The board and the bench page read open tasks by their "until".
    op.create_index('ix_task_status_due_at', 'task', ['status', 'due_at'], unique=False)


def downgrade():
    op.drop_index('ix_task_status_due_at', table_name='task')
    op.drop_index('ix_task_closed_at', table_name='task')
    op.drop_index('ix_task_code', table_name='task')
    op.drop_table('task')

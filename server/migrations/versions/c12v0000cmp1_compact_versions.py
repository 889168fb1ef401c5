"""the compact has versions (issue 12)

Revision ID: c12v0000cmp1
Revises: b12r0000rec1
Create Date: 2026-12-06 06:45:00

Each version gets its number and the decision behind it; each signature
belongs to the version its signer read. Signatures made before any edit
were made on the text the hub came with, which becomes version 1.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c12v0000cmp1'
down_revision = 'b12r0000rec1'
branch_labels = None
depends_on = None

NOT_RECORDED = "Not recorded: edited before the hub kept the assembly's decisions."
FIRST_DECISION = "The text the hub comes with, before any assembly changed it."
# The text the hub showed until the compact's first edit, as it shipped (server/domain/compact.py).
FIRST_TEXT = """We, the neighbours who keep this bench, agree:

1. We look out for each other, and we de-escalate before we do anything else.
2. We call on mediation before conflicts grow, and we keep what we hear in confidence.
3. Our patrol log is public, and it shows what we did, never who we saw.
4. No one is ever named, photographed or reported by this bench without their consent.
5. Every role here is lent by the assembly for a term, and ends unless the assembly renews it.
6. We rehearse together, so that on the worst night we already know what to do."""

# The tables as this migration sees them, whatever the models say later.
_metadata = sa.MetaData()
version_table = sa.Table(
    'compact_version', _metadata,
    sa.Column('id', sa.Integer, primary_key=True), sa.Column('number', sa.Integer), sa.Column('text', sa.Text),
    sa.Column('decision', sa.Text), sa.Column('edited_at', sa.DateTime), sa.Column('editor_id', sa.Integer),
)
signature_table = sa.Table(
    'compact_signature', _metadata,
    sa.Column('id', sa.Integer, primary_key=True), sa.Column('signed_at', sa.DateTime),
    sa.Column('version_id', sa.Integer),
)


def _number_versions_and_place_signatures(conn):
    versions = conn.execute(
        sa.select(version_table.c.id, version_table.c.edited_at)
        .order_by(version_table.c.edited_at, version_table.c.id)).all()
    unplaced = conn.execute(
        sa.select(signature_table.c.id, signature_table.c.signed_at)
        .where(signature_table.c.version_id.is_(None))).all()
    # A signature with no version was made on the text the hub came with, before (or without) any edit.
    on_first_text = [s for s in unplaced if not versions or s.signed_at < versions[0].edited_at]
    if on_first_text:
        first_id = conn.execute(sa.insert(version_table).values(
            number=0, text=FIRST_TEXT, decision=FIRST_DECISION,
            edited_at=min(s.signed_at for s in on_first_text), editor_id=None,
        )).inserted_primary_key[0]
        versions = [(first_id, min(s.signed_at for s in on_first_text)), *versions]
    for number, (version_id, _) in enumerate(versions, start=1):
        values = {'number': number}
        if not on_first_text or version_id != versions[0][0]:
            values['decision'] = NOT_RECORDED
        conn.execute(sa.update(version_table).where(version_table.c.id == version_id).values(**values))
    # Every other one goes to the version that was current when it was made: the latest before it.
    for signature in unplaced:
        current = [version_id for version_id, edited_at in versions if edited_at <= signature.signed_at]
        version_id = current[-1] if current else versions[0][0]
        conn.execute(sa.update(signature_table).where(signature_table.c.id == signature.id)
                     .values(version_id=version_id))


def upgrade():
    # Columns are added in place, never by copying compact_version: on SQLite, dropping the old copy would
    # set every signature's version to NULL (its foreign key said ON DELETE SET NULL).
    with op.batch_alter_table('compact_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('decision', sa.Text(), server_default='', nullable=False))

    _number_versions_and_place_signatures(op.get_bind())

    with op.batch_alter_table('compact_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_compact_version_number'), ['number'], unique=True)

    with op.batch_alter_table('compact_signature', schema=None) as batch_op:
        batch_op.alter_column('version_id', existing_type=sa.Integer(), nullable=False)
        # Versions are never deleted: a signature cannot lose the text it was made on.
        batch_op.drop_constraint('fk_compact_signature_version_id_compact_version', type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_compact_signature_version_id_compact_version'),
                                    'compact_version', ['version_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_compact_signature_version_id'), ['version_id'], unique=False)


def downgrade():
    with op.batch_alter_table('compact_signature', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_compact_signature_version_id'))
        batch_op.drop_constraint('fk_compact_signature_version_id_compact_version', type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_compact_signature_version_id_compact_version'),
                                    'compact_version', ['version_id'], ['id'], ondelete='SET NULL')
        batch_op.alter_column('version_id', existing_type=sa.Integer(), nullable=True)

    # In place again (SQLite 3.35 and later drop a column without copying the table), so signatures keep
    # their versions. The version rows this migration added for the hub's first text stay.
    with op.batch_alter_table('compact_version', schema=None, recreate='never') as batch_op:
        batch_op.drop_index(batch_op.f('ix_compact_version_number'))
        batch_op.drop_column('decision')
        batch_op.drop_column('number')

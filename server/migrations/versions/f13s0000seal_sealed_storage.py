"""sealed storage: member keys, vault keys and grants (issue 13)

Revision ID: f13s0000seal
Revises: e12a0000aud1
Create Date: 2026-12-06 08:40:00

Words already on the card are sealed here, each vault made with its private
key pending (server/domain/sealing.py): the scheduler gives it to the first
reader with a key of their own, and erases it, within a minute of their
first login after the upgrade.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13s0000seal'
down_revision = 'e12a0000aud1'
branch_labels = None
depends_on = None

# (table, column, vault) as the models declare them with SealedText.
SEALED = (
    ("mediation_request", "what", "mediation"),
    ("mediation_request", "where", "mediation"),
    ("mediation_request", "who", "mediation"),
    ("mediation_request", "contact", "mediation"),
    ("mediation_note", "text", "mediation"),
    ("arrest_case", "description", "cases"),
    ("arrest_case", "place", "cases"),
    ("arrest_case", "witness_contact", "cases"),
    ("case_step", "note", "cases"),
    ("log_entry", "note", "log"),
    ("log_entry", "place", "log"),
    ("alert", "resolution", "log"),
    ("complaint", "what", "complaints"),
    ("complaint", "outcome", "complaints"),
    ("aid_post", "contact", "aid"),
    ("compact_signature", "mark", "compact"),
)


def upgrade():
    op.create_table('member_key',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('public_key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('wrapped_private', sa.LargeBinary(), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=16), nullable=False),
    sa.Column('kdf_passes', sa.Integer(), nullable=False),
    sa.Column('kdf_memory_kib', sa.Integer(), nullable=False),
    sa.Column('duress_hash', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_member_key_member_id_member'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_key'))
    )
    op.create_table('vault_key',
    sa.Column('vault', sa.String(length=16), nullable=False),
    sa.Column('public_key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('pending_private', sa.LargeBinary(length=32), nullable=True),
    sa.PrimaryKeyConstraint('vault', name=op.f('pk_vault_key'))
    )
    op.create_table('vault_grant',
    sa.Column('vault', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('sealed_private', sa.LargeBinary(), nullable=False),
    sa.Column('granted_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_vault_grant_member_id_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vault'], ['vault_key.vault'], name=op.f('fk_vault_grant_vault_vault_key'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vault', 'member_id', name=op.f('pk_vault_grant'))
    )
    for table, column, length, nullable in WERE_STRINGS:
        _make_text(table, column, length, nullable)
    _seal_what_is_there(op.get_bind())


# Sealed words are longer than the words (base64 of a sealed box): these columns become TEXT.
WERE_STRINGS = (
    ("mediation_request", "where", 120, True),
    ("mediation_request", "contact", 200, True),
    ("arrest_case", "witness_contact", 200, True),
    ("aid_post", "contact", 200, True),
    ("compact_signature", "mark", 60, False),
    ("log_entry", "place", 80, True),
    ("arrest_case", "place", 80, False),
)


def _make_text(table, column, length, nullable):
    """VARCHAR to TEXT in place: never by rebuilding the table, which with foreign keys on would
    cascade the parent's delete to every note, step and message that hangs off it."""
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length), existing_nullable=nullable)
        return
    spare = f"{column}_sealed"
    with op.batch_alter_table(table, recreate="never") as batch_op:
        # SQLite adds a NOT NULL column in place only with a default; every row gets its value below.
        batch_op.add_column(sa.Column(spare, sa.Text(), nullable=nullable, server_default=None if nullable else ""))
    op.execute(f'UPDATE "{table}" SET "{spare}" = "{column}"')
    with op.batch_alter_table(table, recreate="never") as batch_op:
        batch_op.drop_column(column)
    with op.batch_alter_table(table, recreate="never") as batch_op:
        batch_op.alter_column(spare, new_column_name=column)


def _seal_what_is_there(conn):
    from nacl.public import PrivateKey, PublicKey

    from server.domain.sealing import PREFIX, seal_with

    publics = {}
    for table, column, vault in SEALED:
        rows = conn.execute(sa.text(
            f'SELECT id, "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL AND "{column}" NOT LIKE :sealed'
        ), {"sealed": PREFIX + "%"}).all()
        if not rows:
            continue
        if vault not in publics:
            private = PrivateKey.generate()
            conn.execute(sa.text("INSERT INTO vault_key (vault, public_key, pending_private) VALUES (:v, :pub, :priv)"),
                         {"v": vault, "pub": bytes(private.public_key), "priv": bytes(private)})
            publics[vault] = PublicKey(bytes(private.public_key))
        for row_id, words in rows:
            conn.execute(sa.text(f'UPDATE "{table}" SET "{column}" = :sealed WHERE id = :id'),
                         {"sealed": str(seal_with(publics[vault], vault, words)), "id": row_id})


def downgrade():
    # Sealed words stay sealed: opening them needs a reader's password, which no migration has.
    op.drop_table('vault_grant')
    op.drop_table('vault_key')
    op.drop_table('member_key')

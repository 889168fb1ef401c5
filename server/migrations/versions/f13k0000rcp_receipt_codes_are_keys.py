"""aid receipts become keys: helpers' answers sealed for the poster and the host (issue 13)

Revision ID: f13k0000rcp
Revises: f13r0000ret
Create Date: 2026-12-06 11:10:00

The receipt code was kept in the clear beside answers that may say how to
reach a helper. Now the hub keeps only what Argon2id makes of the code
(server/domain/receipt_keys.py): a lookup and the public half of the
poster's key. Each answer is sealed to that key, and to the aid vault when
the host's part needs it, and the words and the codes leave the card.
Columns change in place: aid_post has messages hanging off it, and with
foreign keys on a rebuild would cascade its delete to them.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f13k0000rcp'
down_revision = 'f13r0000ret'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('receipt_kdf',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=16), nullable=False),
    sa.Column('kdf_passes', sa.Integer(), nullable=False),
    sa.Column('kdf_memory_kib', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_receipt_kdf'))
    )
    with op.batch_alter_table('aid_post', recreate="never") as batch_op:
        # SQLite adds a NOT NULL column in place only with a default; every row gets its key below.
        # x'' is SQLite's empty blob; PostgreSQL reads x'' as a bit string and wants '' for an empty bytea.
        empty = sa.text("x''") if op.get_bind().dialect.name == "sqlite" else sa.text("''")
        batch_op.add_column(sa.Column('poster_key', sa.LargeBinary(length=32), nullable=False, server_default=empty))
    with op.batch_alter_table('aid_post', recreate="never") as batch_op:
        batch_op.alter_column('receipt_code', new_column_name='receipt_lookup')
    with op.batch_alter_table('aid_message', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('for_poster', sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column('for_host', sa.Text(), nullable=True))
    _seal_answers(op.get_bind())
    with op.batch_alter_table('aid_message', recreate="never") as batch_op:
        batch_op.drop_column('text')


def _seal_answers(conn):
    from nacl.public import PrivateKey, PublicKey
    from nacl.pwhash import argon2id
    from nacl.utils import random as random_bytes

    from server.domain import receipt_keys
    from server.domain.sealing import AID, PREFIX, kdf_cost, seal_with

    posts = conn.execute(sa.text("SELECT id, receipt_lookup, contact FROM aid_post")).all()
    if not posts:
        return
    passes, memory = kdf_cost()
    salt = random_bytes(argon2id.SALTBYTES)
    conn.execute(sa.text("INSERT INTO receipt_kdf (id, salt, kdf_passes, kdf_memory_kib) VALUES (1, :s, :p, :m)"),
                 {"s": salt, "p": passes, "m": memory})
    row = conn.execute(sa.text("SELECT public_key FROM vault_key WHERE vault = :v"), {"v": AID}).first()
    if row is None:
        private = PrivateKey.generate()  # pending until the first host logs in (server/domain/sealing.py)
        conn.execute(sa.text("INSERT INTO vault_key (vault, public_key, pending_private) VALUES (:v, :pub, :priv)"),
                     {"v": AID, "pub": bytes(private.public_key), "priv": bytes(private)})
        aid_vault = private.public_key
    else:
        aid_vault = PublicKey(row[0])
    for post_id, code, contact in posts:
        key = receipt_keys.derive(code, salt, passes, memory)
        conn.execute(sa.text("UPDATE aid_post SET receipt_lookup = :lookup, poster_key = :pub WHERE id = :id"),
                     {"lookup": key.lookup, "pub": key.public, "id": post_id})
        messages = conn.execute(sa.text("SELECT id, text, contact_choice FROM aid_message WHERE post_id = :id"),
                                {"id": post_id}).all()
        for message_id, text, choice in messages:
            if text.startswith(PREFIX):
                # Sealed already: a hub that went back down past this version (see downgrade).
                # Only the host's copy, if that is what was kept, can still be opened.
                for_host = text if text.startswith(f"{PREFIX}{AID}:") else None
                text = "This answer was sealed when the hub went back to an older version; ask at the bench."
            else:
                for_host = seal_with(aid_vault, AID, text) if choice != "shown" or contact else None
            conn.execute(sa.text("UPDATE aid_message SET for_poster = :poster, for_host = :host WHERE id = :id"),
                         {"poster": str(receipt_keys.seal_for(key.public, text)),
                          "host": None if for_host is None else str(for_host), "id": message_id})


def downgrade():
    # The codes are gone from the card and only their holders can open the answers: going back
    # keeps each answer sealed (the host's copy where there is one) and the lookups in the code's
    # column. On the older version those posts answer no code; upgraded again, the host still
    # reads their copies, and a poster is told to ask at the bench.
    with op.batch_alter_table('aid_message', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('text', sa.Text(), nullable=False, server_default=""))
    op.execute("UPDATE aid_message SET text = coalesce(for_host, for_poster)")
    with op.batch_alter_table('aid_message', recreate="never") as batch_op:
        batch_op.drop_column('for_host')
    with op.batch_alter_table('aid_message', recreate="never") as batch_op:
        batch_op.drop_column('for_poster')
    with op.batch_alter_table('aid_post', recreate="never") as batch_op:
        batch_op.alter_column('receipt_lookup', new_column_name='receipt_code')
    with op.batch_alter_table('aid_post', recreate="never") as batch_op:
        batch_op.drop_column('poster_key')
    op.drop_table('receipt_kdf')

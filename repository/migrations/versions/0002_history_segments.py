"""History blobs and segments: `chats.history_blob_id`, `history_segments`, and the
indexes the store inventory reads by.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision: str | None = '0001'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # a nullable column without a default: SQLite adds it in place (no table rebuild),
    # and the chats of before have an empty base
    op.add_column('chats', sa.Column('history_blob_id', sa.Uuid(), nullable=True))
    op.create_index('ix_chats_history_blob_id', 'chats', ['history_blob_id'])
    op.create_index('ix_chats_updated_at', 'chats', ['updated_at'])
    op.create_table(
        'history_segments',
        sa.Column(
            'chat_id',
            sa.Uuid(),
            sa.ForeignKey('chats.chat_id', name='fk_history_segments_chat_id', ondelete='CASCADE'),
            primary_key=True,
        ),
        sa.Column('revision', sa.BigInteger(), primary_key=True),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('blob_id', sa.Uuid(), nullable=True),
        sa.Column('content', sa.LargeBinary(), nullable=True),
    )
    op.create_index('ix_history_segments_blob_id', 'history_segments', ['blob_id'])


def downgrade() -> None:
    op.drop_table('history_segments')
    op.drop_index('ix_chats_updated_at', 'chats')
    op.drop_index('ix_chats_history_blob_id', 'chats')
    with op.batch_alter_table('chats') as batch:
        batch.drop_column('history_blob_id')

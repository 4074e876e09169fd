"""Initial schema: workspaces, chats, chat_files, sandbox_sessions, idempotency_keys.

Revision ID: 0001
Revises:
Create Date: 2026-04-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# timestamptz on PostgreSQL; on SQLite a fixed-width ISO-8601 UTC string
# ('YYYY-MM-DDTHH:MM:SS.ffffffZ', see repository.sql.types.UtcDateTime)
TIMESTAMP = sa.DateTime(timezone=True).with_variant(sa.String(27), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'workspaces',
        sa.Column('workspace_id', sa.Uuid(), primary_key=True),
        sa.Column('user_id', sa.Uuid(), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('quota_bytes', sa.BigInteger(), nullable=False),
        sa.Column('used_bytes', sa.BigInteger(), nullable=False),
        sa.UniqueConstraint('user_id', name='uq_workspaces_user_id'),
    )
    op.create_table(
        'chats',
        sa.Column('chat_id', sa.Uuid(), primary_key=True),
        sa.Column(
            'workspace_id',
            sa.Uuid(),
            sa.ForeignKey('workspaces.workspace_id', name='fk_chats_workspace_id'),
            nullable=False,
        ),
        sa.Column('title', sa.Text(), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=False),
        sa.Column('history_bytes', sa.BigInteger(), nullable=False),
        sa.Column('history_revision', sa.BigInteger(), nullable=False),
        sa.Column('file_count', sa.Integer(), nullable=False),
    )
    op.create_index(
        'ix_chats_workspace_id_created_at_chat_id',
        'chats',
        ['workspace_id', 'created_at', 'chat_id'],
    )
    op.create_table(
        'chat_files',
        sa.Column('file_id', sa.Uuid(), primary_key=True),
        sa.Column(
            'chat_id',
            sa.Uuid(),
            sa.ForeignKey('chats.chat_id', name='fk_chat_files_chat_id'),
            nullable=False,
        ),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('content_type', sa.Text(), nullable=True),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.Text(), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.UniqueConstraint('chat_id', 'name', name='uq_chat_files_chat_id_name'),
    )
    op.create_index(
        'ix_chat_files_chat_id_created_at_file_id',
        'chat_files',
        ['chat_id', 'created_at', 'file_id'],
    )
    op.create_table(
        'sandbox_sessions',
        sa.Column(
            'chat_id',
            sa.Uuid(),
            sa.ForeignKey('chats.chat_id', name='fk_sandbox_sessions_chat_id'),
            primary_key=True,
        ),
        sa.Column('sandbox_session_id', sa.Uuid(), nullable=False),
        sa.Column('started_at', TIMESTAMP, nullable=False),
        sa.Column('expires_at', TIMESTAMP, nullable=False),
    )
    op.create_table(
        'idempotency_keys',
        sa.Column('user_id', sa.Uuid(), primary_key=True),
        sa.Column('key', sa.Text(), primary_key=True),
        sa.Column('request_hash', sa.Text(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('response_body', sa.Text(), nullable=True),
        sa.Column('headers', sa.Text(), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'])


def downgrade() -> None:
    op.drop_table('idempotency_keys')
    op.drop_table('sandbox_sessions')
    op.drop_table('chat_files')
    op.drop_table('chats')
    op.drop_table('workspaces')

"""The schema as SQLAlchemy Core tables; `repository/migrations` creates it."""

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

from repository.sql.types import UtcDateTime

metadata = MetaData()

workspaces = Table(
    'workspaces',
    metadata,
    Column('workspace_id', Uuid, primary_key=True),
    Column('user_id', Uuid, nullable=False),
    Column('created_at', UtcDateTime, nullable=False),
    Column('quota_bytes', BigInteger, nullable=False),
    Column('used_bytes', BigInteger, nullable=False),
    UniqueConstraint('user_id', name='uq_workspaces_user_id'),
)

chats = Table(
    'chats',
    metadata,
    Column('chat_id', Uuid, primary_key=True),
    Column(
        'workspace_id',
        Uuid,
        ForeignKey('workspaces.workspace_id', name='fk_chats_workspace_id'),
        nullable=False,
    ),
    Column('title', Text, nullable=True),
    Column('created_at', UtcDateTime, nullable=False),
    Column('updated_at', UtcDateTime, nullable=False),
    Column('history_bytes', BigInteger, nullable=False),
    Column('history_revision', BigInteger, nullable=False),
    Column('file_count', Integer, nullable=False),
    # the blob of the history's base (`Chat.history_blob_id`); NULL: an empty base
    Column('history_blob_id', Uuid, nullable=True),
    Index('ix_chats_workspace_id_created_at_chat_id', 'workspace_id', 'created_at', 'chat_id'),
    # `StoreInventory.named` looks blobs up here, `chats_changed_since` by the time
    Index('ix_chats_history_blob_id', 'history_blob_id'),
    Index('ix_chats_updated_at', 'updated_at'),
)

chat_files = Table(
    'chat_files',
    metadata,
    Column('file_id', Uuid, primary_key=True),
    Column(
        'chat_id',
        Uuid,
        ForeignKey('chats.chat_id', name='fk_chat_files_chat_id'),
        nullable=False,
    ),
    Column('name', Text, nullable=False),
    Column('content_type', Text, nullable=True),
    Column('size_bytes', BigInteger, nullable=False),
    Column('sha256', Text, nullable=False),
    Column('created_at', UtcDateTime, nullable=False),
    UniqueConstraint('chat_id', 'name', name='uq_chat_files_chat_id_name'),
    Index('ix_chat_files_chat_id_created_at_file_id', 'chat_id', 'created_at', 'file_id'),
)

sandbox_sessions = Table(
    'sandbox_sessions',
    metadata,
    Column(
        'chat_id',
        Uuid,
        ForeignKey('chats.chat_id', name='fk_sandbox_sessions_chat_id'),
        primary_key=True,
    ),
    Column('sandbox_session_id', Uuid, nullable=False),
    Column('started_at', UtcDateTime, nullable=False),
    Column('expires_at', UtcDateTime, nullable=False),
)

# what each append added to a chat's history after its base blob: the bytes in a blob
# (`blob_id`) or, when small, in the row (`content`); gone with their chat
history_segments = Table(
    'history_segments',
    metadata,
    Column(
        'chat_id',
        Uuid,
        ForeignKey('chats.chat_id', name='fk_history_segments_chat_id', ondelete='CASCADE'),
        primary_key=True,
    ),
    Column('revision', BigInteger, primary_key=True),
    Column('size_bytes', BigInteger, nullable=False),
    Column('blob_id', Uuid, nullable=True),
    Column('content', LargeBinary, nullable=True),
    Index('ix_history_segments_blob_id', 'blob_id'),
)

# the Idempotency-Key store (ADR 015): one row per user and key
idempotency_keys = Table(
    'idempotency_keys',
    metadata,
    Column('user_id', Uuid, primary_key=True),
    Column('key', Text, primary_key=True),
    Column('request_hash', Text, nullable=False),
    Column('status_code', Integer, nullable=True),
    Column('response_body', Text, nullable=True),
    Column('headers', Text, nullable=True),
    Column('created_at', UtcDateTime, nullable=False),
    Index('ix_idempotency_keys_created_at', 'created_at'),
)

"""The metadata repositories for SQLite and PostgreSQL: one code path for both.

Each family lives in its own module; this one names them all for the unit of work.
"""

from repository.sql.chat import SqlChatRepository
from repository.sql.chat_file import SqlChatFileRepository
from repository.sql.history_segment import SqlHistorySegmentRepository
from repository.sql.idempotency_key import SqlIdempotencyKeyRepository
from repository.sql.inventory import SqlStoreInventory
from repository.sql.sandbox_session import SqlSandboxSessionRepository
from repository.sql.workspace import SqlWorkspaceRepository

__all__ = [
    'SqlChatFileRepository',
    'SqlChatRepository',
    'SqlHistorySegmentRepository',
    'SqlIdempotencyKeyRepository',
    'SqlSandboxSessionRepository',
    'SqlStoreInventory',
    'SqlWorkspaceRepository',
]

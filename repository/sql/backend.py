"""The SQL metadata backends: SQLite and PostgreSQL, over `SqlUnitOfWork` and the SQL
repositories. Each lives in its own module; this one names them for their users."""

from repository.sql.metadata_backend import MIGRATIONS_DIR, SqlMetadataBackend, upgrade_to_head
from repository.sql.postgres_backend import MIGRATION_LOCK_ID, PostgresMetadataBackend, asyncpg_url
from repository.sql.sqlite_backend import (
    KEPT_READ_CONNECTIONS,
    MIN_SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteMetadataBackend,
)

__all__ = [
    'KEPT_READ_CONNECTIONS',
    'MIGRATIONS_DIR',
    'MIGRATION_LOCK_ID',
    'MIN_SQLITE_BUSY_TIMEOUT_SECONDS',
    'PostgresMetadataBackend',
    'SqlMetadataBackend',
    'SqliteMetadataBackend',
    'asyncpg_url',
    'upgrade_to_head',
]

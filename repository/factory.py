from repository.config import MetadataConfig
from repository.memory import InMemoryMetadataBackend
from repository.sql.backend import PostgresMetadataBackend, SqliteMetadataBackend
from usecase.interface import MetadataBackend


def create_metadata_backend(config: MetadataConfig) -> MetadataBackend:
    """The backend named by `config`; nothing connects until it is used."""
    if config.backend == 'memory':
        return InMemoryMetadataBackend()
    if config.backend == 'sqlite':
        if config.sqlite_path is None:  # guarded by MetadataConfig, kept for the type checker
            raise ValueError('sqlite backend needs sqlite_path')
        return SqliteMetadataBackend(
            config.sqlite_path,
            pool_size=config.pool_size,
            busy_timeout_seconds=max(5.0, config.connect_timeout_seconds),
        )
    if config.postgres_dsn is None:
        raise ValueError('postgres backend needs postgres_dsn')
    return PostgresMetadataBackend(
        config.postgres_dsn,
        pool_size=config.pool_size,
        connect_timeout_seconds=config.connect_timeout_seconds,
        statement_timeout_seconds=config.statement_timeout_seconds,
        idle_in_transaction_timeout_seconds=config.idle_in_transaction_timeout_seconds,
    )

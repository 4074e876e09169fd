"""Metadata backends for the contract tests: memory, SQLite (a file) and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from repository.memory import InMemoryMetadataBackend
from repository.sql.backend import PostgresMetadataBackend, SqliteMetadataBackend
from usecase.interface import MetadataBackend

BackendFactory = Callable[[], MetadataBackend]
TABLES = 'workspaces, chats, chat_files, sandbox_sessions, idempotency_keys, history_segments'


@pytest.fixture(scope='session')
def migrated_postgres_dsn(postgres_dsn: str) -> str:
    """The session's throwaway database with the schema at head (migrated once)."""

    async def migrate() -> None:
        backend = PostgresMetadataBackend(postgres_dsn, pool_size=1)
        try:
            await backend.migrate()
        finally:
            await backend.close()

    asyncio.run(migrate())
    return postgres_dsn


@pytest.fixture
def fresh_postgres_dsn(make_postgres_database: Callable[[], str]) -> str:
    """An empty database of its own, for tests of migrations."""
    return make_postgres_database()


@pytest.fixture(
    params=['memory', 'sqlite', pytest.param('postgres', marks=pytest.mark.postgres)],
)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_dsn(backend_name: str, request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL database of the postgres case; None otherwise."""
    if backend_name != 'postgres':
        return None
    return str(request.getfixturevalue('migrated_postgres_dsn'))


@pytest.fixture
def make_backend(backend_name: str, store_dsn: str | None, tmp_path: Path) -> BackendFactory:
    """Makes backends on the same store: the same SQLite file or PostgreSQL database."""
    if backend_name == 'memory':
        return InMemoryMetadataBackend
    if backend_name == 'sqlite':
        path = tmp_path / 'metadata' / 'metadata.sqlite3'
        return lambda: SqliteMetadataBackend(path, pool_size=4)
    assert store_dsn is not None
    return lambda: PostgresMetadataBackend(store_dsn, pool_size=4)


async def _truncate(dsn: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(f'TRUNCATE {TABLES}')
    finally:
        await connection.close()


@pytest.fixture
async def backend(
    make_backend: BackendFactory,
    store_dsn: str | None,
) -> AsyncIterator[MetadataBackend]:
    """A connected, migrated and empty backend, closed after the test."""
    if store_dsn is not None:
        await _truncate(store_dsn)
    metadata_backend = make_backend()
    await metadata_backend.connect()
    await metadata_backend.migrate()
    try:
        yield metadata_backend
    finally:
        await metadata_backend.close()

"""SQLite's one-statement read units (`loop_sqlite.AutocommitReadConnection`): their
prebuilt `SELECT`s run on DB-API connections kept for them, each statement its own
snapshot, and a connection a statement failed on is never used again."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import column, select, table
from sqlalchemy.exc import SQLAlchemyError

from domain.workspace import Workspace
from repository.sql.backend import SqliteMetadataBackend
from repository.sql.loop_sqlite import AutocommitReadConnection

USER = UUID('12345678-1234-5678-1234-567812345678')
WORKSPACE = UUID('11111111-1111-1111-1111-111111111111')
START = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SqliteMetadataBackend]:
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    await backend.migrate()
    async with backend.unit_of_work() as uow:
        await uow.workspaces.add(
            Workspace(WORKSPACE, USER, created_at=START, quota_bytes=1000, used_bytes=1)
        )
        await uow.commit()
    try:
        yield backend
    finally:
        await backend.close()


async def used_bytes_and_connection(backend: SqliteMetadataBackend) -> tuple[int, object]:
    """The workspace's usage, read by a one-statement unit, and the DB-API connection
    that read it."""
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        connection = uow._session.connection
        assert isinstance(connection, AutocommitReadConnection)
        workspace = await uow.workspaces.get_by_user_id(USER)
        dbapi = connection._dbapi
        assert dbapi is not None
        # no SQLAlchemy connection was opened for a prebuilt statement
        assert connection._sqlalchemy is None
        assert workspace is not None
        return workspace.used_bytes, dbapi.dbapi_connection


async def test_a_kept_connection_reads_what_committed_since(
    backend: SqliteMetadataBackend,
) -> None:
    before, first = await used_bytes_and_connection(backend)
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WORKSPACE, 10)
        await uow.commit()

    after, second = await used_bytes_and_connection(backend)

    assert second is first  # the same connection, kept between the units
    assert (before, after) == (1, 11)  # and no snapshot held over from the first read


async def test_a_connection_a_statement_failed_on_is_not_used_again(
    backend: SqliteMetadataBackend,
) -> None:
    _, kept = await used_bytes_and_connection(backend)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        connection = uow._session.connection
        assert isinstance(connection, AutocommitReadConnection)
        with pytest.raises(SQLAlchemyError, match='no such table'):
            connection.rows(select(table('no_such_table', column('x'))), {})
        assert connection._dbapi is not None
        assert connection._dbapi.dbapi_connection is kept

    _, after = await used_bytes_and_connection(backend)

    assert after is not kept


async def test_close_closes_the_kept_connections(backend: SqliteMetadataBackend) -> None:
    _, kept = await used_bytes_and_connection(backend)

    await backend.close()

    with pytest.raises(Exception, match='closed'):
        kept.execute('SELECT 1')  # type: ignore[attr-defined]

"""PostgreSQL's units in a transaction (`asyncpg_reads.AsyncpgTransactionConnection`): the
transaction is asyncpg's own, prebuilt writes count what SQLAlchemy counts, and a unit
that ends without committing gives its connection back with nothing open."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.workspace import Workspace
from repository.sql.asyncpg_reads import AsyncpgTransactionConnection
from repository.sql.backend import PostgresMetadataBackend
from repository.sql.chat import CHAT_UPSERT
from repository.sql.tables import chats
from repository.sql.workspace import ADD_USED_BYTES, ADD_USED_BYTES_WITHIN_QUOTA

pytestmark = pytest.mark.postgres

USER = UUID('12345678-1234-5678-1234-567812345678')
WORKSPACE = UUID('11111111-1111-1111-1111-111111111111')
START = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def backend(fresh_postgres_dsn: str) -> AsyncIterator[PostgresMetadataBackend]:
    backend = PostgresMetadataBackend(fresh_postgres_dsn, pool_size=1)
    await backend.migrate()
    async with backend.unit_of_work() as uow:
        await uow.workspaces.add(
            Workspace(WORKSPACE, USER, created_at=START, quota_bytes=100, used_bytes=42)
        )
        await uow.commit()
    try:
        yield backend
    finally:
        await backend.close()


def connection_of(uow: object) -> AsyncpgTransactionConnection:
    connection = uow._session.connection  # type: ignore[attr-defined]
    assert isinstance(connection, AsyncpgTransactionConnection)
    return connection


async def used_bytes(backend: PostgresMetadataBackend) -> int:
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        workspace = await uow.workspaces.get(WORKSPACE)
    assert workspace is not None
    return workspace.used_bytes


async def test_prebuilt_writes_count_what_sqlalchemy_counts(
    backend: PostgresMetadataBackend,
) -> None:
    within = {'b_workspace_id': WORKSPACE, 'b_delta': 58}
    beyond = {'b_workspace_id': WORKSPACE, 'b_delta': 59}
    chat_id = uuid4()
    chat = {f'b_{column.name}': None for column in chats.c} | {
        'b_chat_id': chat_id,
        'b_workspace_id': WORKSPACE,
        'b_created_at': START,
        'b_updated_at': START,
        'b_history_bytes': 0,
        'b_history_revision': 0,
        'b_file_count': 0,
    }
    async with backend.unit_of_work() as uow:
        connection = connection_of(uow)
        counts = []
        for statement, parameters in [
            (ADD_USED_BYTES_WITHIN_QUOTA, within),
            (ADD_USED_BYTES_WITHIN_QUOTA, beyond),
            (CHAT_UPSERT['postgresql'], chat),
            (CHAT_UPSERT['postgresql'], {**chat, 'b_title': 'again'}),
        ]:
            await connection.execute(text('SAVEPOINT counted'))
            fast = await connection.write(statement, parameters)
            await connection.execute(text('ROLLBACK TO SAVEPOINT counted'))
            slow = (await connection.execute(statement, parameters)).rowcount
            counts.append((fast, slow))
        await uow.commit()

    # usage 42 + 58 = 100: the second one does not fit; the upsert of a chat it created
    # is one row again
    assert counts == [(1, 1), (0, 0), (1, 1), (1, 1)]
    assert await used_bytes(backend) == 100


async def test_a_unit_ended_without_commit_leaves_nothing_open(
    backend: PostgresMetadataBackend,
) -> None:
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WORKSPACE, 10)
        driver = connection_of(uow)._driver
        assert driver.is_in_transaction()

    # one connection in the pool: the next unit gets the same one, with nothing open
    async with backend.unit_of_work() as uow:
        assert connection_of(uow)._driver is driver
        assert not driver.is_in_transaction()
        await uow.workspaces.add_used_bytes(WORKSPACE, 0)
    assert await used_bytes(backend) == 42


async def test_a_failed_statement_is_rolled_back_and_the_connection_serves_again(
    backend: PostgresMetadataBackend,
) -> None:
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WORKSPACE, 10)
        with pytest.raises(DBAPIError, match='division by zero'):
            await connection_of(uow).execute(text('SELECT 1 / 0'))

    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WORKSPACE, 5)
        await uow.commit()
    assert await used_bytes(backend) == 47


async def test_sqlalchemys_statements_run_in_the_same_transaction(
    backend: PostgresMetadataBackend,
) -> None:
    async with backend.unit_of_work() as uow:
        connection = connection_of(uow)
        await connection.write(ADD_USED_BYTES, {'b_workspace_id': WORKSPACE, 'b_delta': 1})
        seen = await connection.execute(
            text('SELECT used_bytes, txid_current_if_assigned() IS NOT NULL FROM workspaces')
        )
        assert seen.one() == (43, True)  # the write's transaction, seen by SQLAlchemy's
        await uow.rollback()
    assert await used_bytes(backend) == 42


async def test_connections_the_server_closed_in_the_pool_are_replaced(
    fresh_postgres_dsn: str,
) -> None:
    """A restart, a failover or an idle kill closes pooled connections: the next units
    get fresh ones instead of failing (a 500 for each dead one)."""
    backend = PostgresMetadataBackend(fresh_postgres_dsn, pool_size=3)
    try:
        await backend.migrate()
        units = [backend.unit_of_work() for _ in range(3)]
        for unit in units:  # three connections in the pool
            await unit.__aenter__()
            await unit.workspaces.get(WORKSPACE)
        pids = [
            (await connection_of(unit).execute(text('SELECT pg_backend_pid()'))).scalar()
            for unit in units
        ]
        for unit in units:
            await unit.__aexit__(None, None, None)
        killer = await asyncpg.connect(fresh_postgres_dsn)
        try:
            killed = await killer.fetchval(
                'SELECT count(pg_terminate_backend(pid)) FROM unnest($1::int[]) AS pid', pids
            )
        finally:
            await killer.close()
        assert killed == 3
        await asyncio.sleep(0.2)  # the closes reach the pooled connections

        for _ in range(4):
            async with backend.unit_of_work() as uow:
                await uow.workspaces.add(
                    Workspace(uuid4(), uuid4(), created_at=START, quota_bytes=1, used_bytes=0)
                )
                await uow.commit()
    finally:
        await backend.close()

"""PostgreSQL's backend when the server terminates its connections (an admin's
`pg_terminate_backend`, a restart): the unit that was using one fails with
`ServiceUnavailableError` (503, safe to retry), the connection is never handed out
again, and the next unit gets a new one; readiness says whether a unit could run."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from domain.error import ServiceUnavailableError
from domain.workspace import Workspace
from repository.sql.backend import PostgresMetadataBackend

pytestmark = pytest.mark.postgres

USER = UUID('12345678-1234-5678-1234-567812345678')
WORKSPACE = UUID('11111111-1111-1111-1111-111111111111')
START = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
# how long the next unit may take: far below the backend's acquire timeout
NEXT_UNIT_SECONDS = 3.0
# the frontend message that ends a connection: 'X' and its length
_TERMINATE_MESSAGE = b'X\x00\x00\x00\x04'


class LingeringProxy:
    """Forwards a local port to PostgreSQL. When the server closes a connection, its last
    message (the FATAL of `pg_terminate_backend`) reaches the client, and the end of the
    connection reaches it only when the client next sends something: the moment between
    the two, which asyncpg sees as an open connection whose protocol expects nothing.
    A connection the client ends itself (its Terminate message) ends at once."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, '127.0.0.1', 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}
        upstream_closed = asyncio.Event()
        said_goodbye = False

        async def to_server() -> None:
            nonlocal said_goodbye
            with contextlib.suppress(OSError, ConnectionError):
                while data := await reader.read(65536):
                    if upstream_closed.is_set():
                        break
                    said_goodbye = data.startswith(_TERMINATE_MESSAGE)
                    up_writer.write(data)
                    await up_writer.drain()
            writer.transport.abort()
            up_writer.transport.abort()

        async def to_client() -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            upstream_closed.set()
            if said_goodbye:
                writer.transport.abort()

        await asyncio.gather(to_server(), to_client())


async def terminate_backends(dsn: str) -> int:
    """Terminate every other connection to the database of `dsn`; how many."""
    database = make_url(dsn).database
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        killed: int = await admin.fetchval(
            'SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity '
            'WHERE datname = $1 AND pid <> pg_backend_pid()',
            database,
        )
    finally:
        await admin.close()
    return killed


async def read_workspace(backend: PostgresMetadataBackend) -> Workspace | None:
    """The workspace, by a prebuilt `SELECT` on the read connections (`ReadConnections`)."""
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        return await uow.workspaces.get_by_user_id(USER)


async def lock_workspace(backend: PostgresMetadataBackend) -> Workspace | None:
    async with backend.unit_of_work() as uow:
        workspace = await uow.workspaces.get_by_user_id(USER, for_update=True)
        await uow.commit()
        return workspace


@pytest.fixture
async def migrated_dsn(fresh_postgres_dsn: str) -> str:
    backend = PostgresMetadataBackend(fresh_postgres_dsn, pool_size=1)
    try:
        await backend.migrate()
        async with backend.unit_of_work() as uow:
            await uow.workspaces.add(Workspace(WORKSPACE, USER, created_at=START, quota_bytes=100))
            await uow.commit()
    finally:
        await backend.close()
    return fresh_postgres_dsn


@pytest.fixture
async def backend(migrated_dsn: str) -> AsyncIterator[PostgresMetadataBackend]:
    backend = PostgresMetadataBackend(
        migrated_dsn, pool_size=1, connect_timeout_seconds=0.5, statement_timeout_seconds=10
    )
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def proxied_backend(migrated_dsn: str) -> AsyncIterator[PostgresMetadataBackend]:
    url = make_url(migrated_dsn)
    proxy = LingeringProxy(url.host or '127.0.0.1', url.port or 5432)
    await proxy.start()
    dsn = url.set(port=proxy.port).render_as_string(hide_password=False)
    backend = PostgresMetadataBackend(dsn, pool_size=1, statement_timeout_seconds=10)
    try:
        yield backend
    finally:
        await backend.close()
        await proxy.stop()


async def test_a_read_whose_connection_is_terminated_mid_statement_gives_its_slot_back(
    backend: PostgresMetadataBackend, migrated_dsn: str
) -> None:
    """With one connection for reads: the read fails with 503, and the next read gets
    a connection at once instead of waiting for one that never comes back."""
    locker = await asyncpg.connect(migrated_dsn, timeout=5)
    try:
        # the read waits on the table's lock until the server terminates it
        await locker.execute('BEGIN; LOCK TABLE workspaces IN ACCESS EXCLUSIVE MODE')
        reading = asyncio.create_task(read_workspace(backend))
        reader = await waiting_on_a_lock(migrated_dsn)
        await locker.execute('SELECT pg_terminate_backend($1)', reader)

        with pytest.raises(ServiceUnavailableError):
            await asyncio.wait_for(reading, timeout=5)
        await locker.execute('ROLLBACK')
    finally:
        await locker.close()

    workspace = await asyncio.wait_for(read_workspace(backend), timeout=NEXT_UNIT_SECONDS)
    assert workspace is not None
    assert workspace.user_id == USER


async def waiting_on_a_lock(dsn: str) -> int:
    """The process id of the one connection to the database of `dsn` waiting on a lock."""
    # a connection of its own: pg_stat_activity is read once per transaction
    watcher = await asyncpg.connect(dsn, timeout=5)
    try:
        for _ in range(100):
            waiting = await watcher.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                make_url(dsn).database,
            )
            if waiting:
                assert len(waiting) == 1
                pid: int = waiting[0]['pid']
                return pid
            await asyncio.sleep(0.05)
    finally:
        await watcher.close()
    pytest.fail('no connection waits on the lock')


async def test_a_read_on_a_connection_the_server_ended_while_idle_is_unavailable(
    proxied_backend: PostgresMetadataBackend, migrated_dsn: str
) -> None:
    assert await read_workspace(proxied_backend) is not None
    assert await terminate_backends(migrated_dsn) >= 1
    await asyncio.sleep(0.3)  # the server's FATAL arrives; the connection looks open

    with pytest.raises(ServiceUnavailableError):
        await read_workspace(proxied_backend)

    workspace = await asyncio.wait_for(read_workspace(proxied_backend), NEXT_UNIT_SECONDS)
    assert workspace is not None


async def test_a_write_on_a_connection_the_server_ended_while_idle_is_unavailable(
    proxied_backend: PostgresMetadataBackend, migrated_dsn: str
) -> None:
    """asyncpg refuses to begin on it ('another operation (2) is in progress'): 503, and
    the connection is dropped, so the retry runs on a new one."""
    assert await lock_workspace(proxied_backend) is not None
    assert await terminate_backends(migrated_dsn) >= 1
    await asyncio.sleep(0.3)

    with pytest.raises(ServiceUnavailableError):
        await lock_workspace(proxied_backend)

    workspace = await asyncio.wait_for(lock_workspace(proxied_backend), NEXT_UNIT_SECONDS)
    assert workspace is not None


async def test_readiness_fails_while_reads_cannot_get_a_connection(
    backend: PostgresMetadataBackend,
) -> None:
    assert await backend.health_check()
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        # the only read connection is this unit's until it ends
        assert await uow.workspaces.get_by_user_id(USER) is not None
        assert not await backend.health_check()
    assert await backend.health_check()

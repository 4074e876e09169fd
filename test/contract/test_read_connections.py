"""`asyncpg_reads.ReadConnections`: the asyncpg connections of PostgreSQL's autocommit read
units, on a real server: reused when idle, bounded, replaced when expired or left in a
transaction, and closed when the backend closes."""

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial

import asyncpg
import pytest

from repository.sql.asyncpg_reads import ReadConnections

pytestmark = pytest.mark.postgres


async def backend_pid(connection: asyncpg.Connection) -> int:
    pid: int = await connection.fetchval('SELECT pg_backend_pid()')
    return pid


@pytest.fixture
def make_connections(
    postgres_server_dsn: str,
) -> Callable[..., ReadConnections]:
    def make(size: int = 2, timeout: float = 5.0) -> ReadConnections:
        return ReadConnections(
            partial(asyncpg.connect, postgres_server_dsn, timeout=5),
            size=size,
            acquire_timeout_seconds=timeout,
        )

    return make


@pytest.fixture
async def connections(
    make_connections: Callable[..., ReadConnections],
) -> AsyncIterator[ReadConnections]:
    made = make_connections()
    try:
        yield made
    finally:
        await made.close(1.0)


async def test_an_idle_connection_is_used_again(connections: ReadConnections) -> None:
    first = await connections.acquire()
    pid = await backend_pid(first)
    connections.release(first)

    again = await connections.acquire()

    assert again is first
    assert await backend_pid(again) == pid
    assert connections.open_count == 1
    connections.release(again)


async def test_at_most_size_are_open_and_a_waiter_gets_one_given_back(
    connections: ReadConnections,
) -> None:
    first = await connections.acquire()
    second = await connections.acquire()
    waiting = asyncio.create_task(connections.acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert connections.open_count == 2

    connections.release(first)
    third = await asyncio.wait_for(waiting, timeout=5)

    assert third is first
    assert connections.open_count == 2
    connections.release(second)
    connections.release(third)


async def test_acquire_gives_up_after_the_timeout_and_keeps_no_slot(
    make_connections: Callable[..., ReadConnections],
) -> None:
    connections = make_connections(size=1, timeout=0.1)
    try:
        held = await connections.acquire()
        with pytest.raises(TimeoutError):
            await connections.acquire()
        connections.release(held)

        again = await asyncio.wait_for(connections.acquire(), timeout=5)
        assert again is held
        connections.release(again)
    finally:
        await connections.close(1.0)


async def test_a_failed_connect_keeps_no_slot(postgres_server_dsn: str) -> None:
    attempts = 0

    async def connect() -> asyncpg.Connection:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError('refused')
        return await asyncpg.connect(postgres_server_dsn, timeout=5)

    connections = ReadConnections(connect, size=1, acquire_timeout_seconds=0.5)
    try:
        with pytest.raises(OSError, match='refused'):
            await connections.acquire()
        connection = await connections.acquire()
        assert await backend_pid(connection) > 0
        connections.release(connection)
    finally:
        await connections.close(1.0)
    assert attempts == 2


async def test_a_connection_left_in_a_transaction_is_closed_not_kept(
    connections: ReadConnections,
) -> None:
    stray = await connections.acquire()
    stray_pid = await backend_pid(stray)
    await stray.execute('BEGIN')

    connections.release(stray)

    assert stray.is_closed()
    fresh = await connections.acquire()
    assert await backend_pid(fresh) != stray_pid
    assert not fresh.is_in_transaction()
    connections.release(fresh)


async def test_a_connection_terminated_by_its_unit_gives_its_slot_back(
    make_connections: Callable[..., ReadConnections],
) -> None:
    """What a unit does after a failed statement (`invalidate`): the slot is free again,
    and the closed connection is never handed out."""
    connections = make_connections(size=1, timeout=0.5)
    try:
        broken = await connections.acquire()
        broken.terminate()

        connections.release(broken)

        fresh = await asyncio.wait_for(connections.acquire(), timeout=5)
        assert fresh is not broken
        assert await backend_pid(fresh) > 0
        connections.release(fresh)
    finally:
        await connections.close(1.0)


async def test_expire_closes_idle_connections_and_those_in_use_once_back(
    connections: ReadConnections,
) -> None:
    idle = await connections.acquire()
    in_use = await connections.acquire()
    pids = {await backend_pid(idle), await backend_pid(in_use)}
    connections.release(idle)

    connections.expire()

    assert idle.is_closed()
    assert not in_use.is_closed()
    assert await backend_pid(in_use) in pids  # still serves the unit that holds it
    connections.release(in_use)
    assert in_use.is_closed()
    fresh = await connections.acquire()
    assert await backend_pid(fresh) not in pids
    connections.release(fresh)


async def test_close_waits_for_a_connection_in_use_then_closes_it(
    make_connections: Callable[..., ReadConnections],
) -> None:
    connections = make_connections()
    idle = await connections.acquire()
    in_use = await connections.acquire()
    connections.release(idle)

    closing = asyncio.create_task(connections.close(5.0))
    await asyncio.sleep(0.05)

    assert idle.is_closed()
    assert not closing.done()
    assert await backend_pid(in_use) > 0
    connections.release(in_use)
    await asyncio.wait_for(closing, timeout=5)
    assert in_use.is_closed()
    with pytest.raises(RuntimeError, match='closed'):
        await connections.acquire()


async def test_close_terminates_what_is_not_back_in_time(
    make_connections: Callable[..., ReadConnections],
) -> None:
    connections = make_connections()
    held = await connections.acquire()

    await asyncio.wait_for(connections.close(0.1), timeout=5)

    assert held.is_closed()

"""A writer paused between its file write and its commit changes nothing committed.

Two replicas on one PostgreSQL database and one data directory. Replica A stages an
append (its bytes are in a new blob) and then waits for the workspace lock, which the
test holds; A is stopped with SIGSTOP and the lock let go, so that A's transaction gets
the lock while A cannot use it. PostgreSQL ends A's session after the idle-in-transaction
timeout, B appends, and A is resumed: B's appends are all there, A's bytes nowhere.
"""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from e2e_support import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

IDLE_TIMEOUT_SECONDS = 2
WAIT_SECONDS = 20.0
STALLED = b's' * 100_000  # over the size kept in a row: staged as a blob


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (Granian serves from a child process)."""
    parents: dict[int, int] = {}
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / 'stat').read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(')', 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def blob_files(data_dir: Path) -> set[str]:
    blobs = data_dir / '.blobs'
    return {p.name for p in blobs.glob('[0-9a-f][0-9a-f]/*')} if blobs.exists() else set()


@pytest.fixture
def replicas(
    make_postgres_database: Callable[[], str], tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    dsn = make_postgres_database()
    env = {
        'STORAGE_POSTGRES_DSN': dsn,
        'STORAGE_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS': str(IDLE_TIMEOUT_SECONDS),
    }
    for name in ('logs-a', 'logs-b'):
        (tmp_path / name).mkdir()
    first = ServerProcess(tmp_path / 'data', tmp_path / 'logs-a', backend='postgres', extra_env=env)
    second = ServerProcess(
        tmp_path / 'data', tmp_path / 'logs-b', backend='postgres', extra_env=env
    )
    with first, second:
        yield first, second, dsn


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        await asyncio.sleep(0.05)


async def test_a_writer_stalled_past_its_lock_changes_nothing_committed(
    replicas: tuple[ServerProcess, ServerProcess, str],
) -> None:
    first, second, dsn = replicas
    assert first.process is not None
    user = uuid4()
    headers = {'X-User-Id': str(user)}
    async with (
        httpx.AsyncClient(base_url=first.base_url, headers=headers, timeout=60) as a,
        httpx.AsyncClient(base_url=second.base_url, headers=headers, timeout=60) as b,
    ):
        assert (await a.put('/v1/workspace')).status_code == 201
        chat_id = (await a.post('/v1/chats')).json()['chat_id']
        history = f'/v1/chats/{chat_id}/history'
        assert (await a.post(history, content=b'base\n')).status_code == 200
        blobs_before = blob_files(first.data_dir)

        admin = await asyncpg.connect(dsn.replace('postgresql+asyncpg://', 'postgresql://'))
        stopped: list[int] = []
        try:
            locker = admin.transaction()
            await locker.start()
            await admin.execute(
                'SELECT 1 FROM workspaces WHERE user_id = $1 FOR UPDATE', UUID(str(user))
            )
            stalled = asyncio.create_task(a.post(history, content=STALLED))

            async def staged_and_waiting() -> bool:
                waiting = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    ' AND pid <> pg_backend_pid()'
                )
                staged = len(blob_files(first.data_dir) - blobs_before) == 1
                return bool(waiting) and staged

            await wait_until(staged_and_waiting, "A's append staged and waiting for the lock")
            stopped = descendants(first.process.pid)
            signal_all(stopped, signal.SIGSTOP)
            await locker.rollback()  # A's transaction now holds the lock, stopped

            started = time.monotonic()
            for _ in range(3):
                assert (await b.post(history, content=b'after\n')).status_code == 200
            # the lock of the stalled transaction lasted about the idle timeout, no more
            assert time.monotonic() - started < IDLE_TIMEOUT_SECONDS + 10
        finally:
            signal_all(stopped, signal.SIGCONT)
            await admin.close()

        answer = await stalled
        assert answer.status_code == 503, answer.text
        expected = b'base\n' + b'after\n' * 3
        for client in (a, b):
            read = await client.get(history)
            assert read.status_code == 200
            assert read.content == expected
        usage = (await b.get('/v1/workspace')).json()['used_bytes']
        assert usage == len(expected)
        # an append through A works again, and lands after what B committed
        assert (await a.post(history, content=b'again\n')).status_code == 200
        assert (await b.get(history)).content == expected + b'again\n'

        async def view_is_the_history() -> bool:
            workspace_id = (await b.get('/v1/workspace')).json()['workspace_id']
            chat_dir = first.data_dir / 'workspaces' / str(workspace_id) / 'chats' / str(chat_id)
            view = chat_dir / 'history.md'
            return view.exists() and view.read_bytes() == expected + b'again\n'

        await wait_until(view_is_the_history, 'the chat directory to show the history')

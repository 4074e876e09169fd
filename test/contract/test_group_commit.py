"""Grouped write units (`group=True`): the same outcome as units run one by one, and on
SQLite one transaction for the units that queued together (ADR 024)."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest

from domain.error import InsufficientStorageError, ServiceUnavailableError
from domain.workspace import Workspace
from repository.sql.backend import SqliteMetadataBackend
from repository.sql.loop_sqlite import LoopConnection
from usecase.interface import MetadataBackend

T = TypeVar('T')

FIRST_WORKSPACE = Workspace(
    workspace_id=UUID(int=1),
    user_id=UUID(int=101),
    quota_bytes=1_000,
    used_bytes=0,
    created_at=datetime(2026, 4, 1, tzinfo=UTC),
)


def workspace(n: int) -> Workspace:
    return replace(FIRST_WORKSPACE, workspace_id=UUID(int=n), user_id=UUID(int=100 + n))


async def stored(backend: MetadataBackend, *numbers: int) -> list[int]:
    """Which of the workspaces `numbers` a reader sees committed."""
    async with backend.unit_of_work(write=False) as uow:
        return [n for n in numbers if await uow.workspaces.get(UUID(int=n)) is not None]


# --- every backend ----------------------------------------------------------------------


async def test_grouped_units_add_up_as_units_run_one_by_one(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(workspace(1))
        await uow.commit()

    async def add(delta: int) -> None:
        async with backend.unit_of_work(group=True) as uow:
            found = await uow.workspaces.get_by_user_id(UUID(int=101), for_update=True)
            assert found is not None
            assert await uow.workspaces.add_used_bytes(found.workspace_id, delta)
            await asyncio.sleep(0)
            await uow.commit()

    await asyncio.gather(*(add(delta) for delta in range(1, 11)))

    async with backend.unit_of_work(write=False) as uow:
        found = await uow.workspaces.get(UUID(int=1))
    assert found is not None
    assert found.used_bytes == sum(range(1, 11))


async def test_a_grouped_unit_that_fails_leaves_nothing_and_the_others_commit(
    backend: MetadataBackend,
) -> None:
    async def save(n: int) -> None:
        async with backend.unit_of_work(group=True) as uow:
            await uow.workspaces.save(workspace(n))
            await asyncio.sleep(0)
            if n == 2:
                raise LookupError
            await uow.commit()

    outcomes = await asyncio.gather(*(save(n) for n in (1, 2, 3)), return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [type(None), LookupError, type(None)]
    assert await stored(backend, 1, 2, 3) == [1, 3]


# --- SQLite: one transaction for the units that queued together -------------------------


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteMetadataBackend]:
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3', max_group_units=3)
    await backend.connect()
    await backend.migrate()
    yield backend
    await backend.close()


class _RunFirst(Executor):
    """The COMMIT's executor, running `first` in the COMMIT's thread just before it."""

    def __init__(self, executor: Executor, first: Callable[[], None]) -> None:
        self._executor = executor
        self._first = first

    def submit(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> Future[T]:
        def run() -> T:
            self._first()
            return fn(*args, **kwargs)

        return self._executor.submit(run)


class CommitProbe:
    """Instruments `LoopConnection.commit` (our class, not the driver): in the thread
    that runs each COMMIT, just before it, records that thread and what a reader on the
    event loop sees of workspaces 1..6; then it holds the COMMIT until `release` is set,
    and fails it with `error` when that is set."""

    def __init__(self, backend: MetadataBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self._backend = backend
        self._loop = asyncio.get_running_loop()
        self.threads: list[int] = []
        self.seen: list[list[int]] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.error: Exception | None = None
        original = LoopConnection.commit

        async def commit(connection: LoopConnection) -> None:
            commits = connection._commits
            connection._commits = _RunFirst(commits, self._before_commit)
            try:
                await original(connection)
            finally:
                connection._commits = commits

        monkeypatch.setattr(LoopConnection, 'commit', commit)

    def _before_commit(self) -> None:
        self.threads.append(threading.get_ident())
        self.seen.append(
            asyncio.run_coroutine_threadsafe(
                stored(self._backend, *range(1, 7)), self._loop
            ).result(10)
        )
        self.holding.set()
        if not self.release.wait(10):
            raise TimeoutError
        if self.error is not None:
            raise self.error


async def commit_grouped(backend: MetadataBackend, n: int) -> None:
    async with backend.unit_of_work(group=True) as uow:
        await uow.workspaces.save(workspace(n))
        await asyncio.sleep(0)  # the others queue for the lock meanwhile
        await uow.commit()


async def test_units_that_queue_together_commit_together_in_groups_of_at_most_the_cap(
    sqlite: SqliteMetadataBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CommitProbe(sqlite, monkeypatch)

    await asyncio.gather(*(commit_grouped(sqlite, n) for n in range(1, 7)))

    # two COMMITs for six units, groups of three (the cap): no row of a group is visible
    # before its COMMIT, and the first group's rows are before the second's
    assert probe.seen == [[], [1, 2, 3]]
    # COMMIT runs off the event loop: a reader ran on the loop meanwhile
    assert threading.get_ident() not in probe.threads
    assert await stored(sqlite, *range(1, 7)) == [1, 2, 3, 4, 5, 6]


async def test_a_member_that_leaves_its_group_leaves_the_others_rows(
    sqlite: SqliteMetadataBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CommitProbe(sqlite, monkeypatch)

    async def save(n: int) -> None:
        async with sqlite.unit_of_work(group=True) as uow:
            await uow.workspaces.save(workspace(n))
            await asyncio.sleep(0)
            if n == 2:
                return
            await uow.commit()

    await asyncio.gather(*(save(n) for n in (1, 2, 3)))

    # one COMMIT for the group, with the rows of the members that committed into it
    assert probe.seen == [[]]
    assert await stored(sqlite, 1, 2, 3) == [1, 3]


async def test_a_failed_group_commits_nothing_and_fails_every_member(
    sqlite: SqliteMetadataBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CommitProbe(sqlite, monkeypatch)
    probe.error = InsufficientStorageError()

    outcomes = await asyncio.gather(
        *(commit_grouped(sqlite, n) for n in (1, 2, 3)), return_exceptions=True
    )

    assert [type(outcome) for outcome in outcomes] == [InsufficientStorageError] * 3
    assert len(probe.seen) == 1  # one group
    assert await stored(sqlite, 1, 2, 3) == []
    # the writer's lock is free and the next group commits
    probe.error = None
    await commit_grouped(sqlite, 4)
    assert await stored(sqlite, 1, 2, 3, 4) == [4]


async def test_a_unit_that_leaves_a_failed_group_fails_too(
    sqlite: SqliteMetadataBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    CommitProbe(sqlite, monkeypatch).error = InsufficientStorageError()
    seen: list[Workspace | None] = []

    async def reader() -> None:
        async with sqlite.unit_of_work(group=True) as uow:
            # the first member's row, committed into the group but not yet to the store
            seen.append(await uow.workspaces.get(UUID(int=1)))
            return

    outcomes = await asyncio.gather(commit_grouped(sqlite, 1), reader(), return_exceptions=True)

    assert seen == [workspace(1)]
    # what the reader answered from did not commit: it does not answer from it
    assert [type(outcome) for outcome in outcomes] == [
        InsufficientStorageError,
        ServiceUnavailableError,
    ]
    assert await stored(sqlite, 1) == []


async def test_a_unit_that_runs_alone_ends_the_open_group_first(
    sqlite: SqliteMetadataBackend,
) -> None:
    entered = asyncio.Event()

    async def grouped() -> None:
        async with sqlite.unit_of_work(group=True) as uow:
            await uow.workspaces.save(workspace(1))
            entered.set()
            await asyncio.sleep(0.01)  # the unit below queues for the lock meanwhile
            await uow.commit()

    member = asyncio.create_task(grouped())
    await entered.wait()
    # queued ahead of the task that ends the group: it ends the group itself, or its
    # BEGIN IMMEDIATE would wait for the group's write lock until the busy timeout
    async with sqlite.unit_of_work() as uow:
        assert await uow.workspaces.get(UUID(int=1)) == workspace(1)
        await uow.workspaces.save(workspace(2))
        await uow.commit()
    await member
    assert await stored(sqlite, 1, 2) == [1, 2]


async def test_a_grouped_unit_runs_nothing_after_its_commit(
    sqlite: SqliteMetadataBackend,
) -> None:
    async with sqlite.unit_of_work(group=True) as uow:
        with pytest.raises(RuntimeError, match='does not roll back'):
            await uow.rollback()
        await uow.workspaces.save(workspace(1))
        await uow.commit()
        with pytest.raises(RuntimeError, match='outside its unit of work'):
            await uow.workspaces.get(UUID(int=1))
        with pytest.raises(RuntimeError, match='commits once'):
            await uow.commit()
    assert await stored(sqlite, 1) == [1]


async def test_a_member_cancelled_while_its_group_commits_gets_the_outcome_first(
    sqlite: SqliteMetadataBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = CommitProbe(sqlite, monkeypatch)
    probe.release.clear()
    reached: list[str] = []

    async def member() -> None:
        await commit_grouped(sqlite, 1)
        reached.append('committed')
        await asyncio.sleep(0)
        reached.append('went on')

    task = asyncio.create_task(member())
    assert await asyncio.to_thread(probe.holding.wait, 10)  # its group's COMMIT is held
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    probe.release.set()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached == ['committed']
    assert await stored(sqlite, 1) == [1]


async def test_closing_the_backend_waits_for_the_open_group(tmp_path: Path) -> None:
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    await backend.connect()
    await backend.migrate()
    member = asyncio.create_task(commit_grouped(backend, 1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await backend.close()
    await member

    reopened = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    try:
        assert await stored(reopened, 1) == [1]
    finally:
        await reopened.close()

"""Start-up recovery (ADR 016) on a real data directory and a real SQLite store.

A crash is simulated by applying a storage change and never settling it (the process
"died" between the swap and the metadata commit, or between the commit and the clean-up).
"""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

import pytest

from adapter.clock import SystemClock
from adapter.file_maintenance import FileSystemMaintenance, OwnerLock
from adapter.file_storage import VERSION_XATTR, FileSystemChatStorage
from adapter.id_generator import UuidGenerator
from domain.chat import Chat, ChatAttachmentName
from domain.error import CommitOutcomeUnknownError
from domain.recovery import PendingChange
from repository.sql.backend import PostgresMetadataBackend, SqliteMetadataBackend
from usecase import recover_storage
from usecase.append_history import AppendHistory
from usecase.create_chat import CreateChat
from usecase.delete_attachment import DeleteAttachment
from usecase.ensure_workspace import EnsureWorkspace
from usecase.get_attachment import ReadAttachment
from usecase.interface import PendingSync, UnitOfWork
from usecase.read_history import ReadHistory
from usecase.recover_storage import RecoverStorage, RecoveryReport, SettleChatChanges
from usecase.upload_attachment import UploadAttachment
from usecase.write_history import HistoriesInDoubt, WriteHistory

USER_ID = UUID('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb')
NAME = ChatAttachmentName('report.txt')
OLD = b'the committed version'
NEW = b'a version whose metadata never committed'


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass
class World:
    backend: SqliteMetadataBackend
    data_dir: Path
    storage: FileSystemChatStorage
    chat: Chat

    @property
    def path(self) -> Path:
        return self.storage.attachment_path(self.chat, NAME)

    async def recover(self, own_owner: str | None = None) -> RecoveryReport:
        maintenance = FileSystemMaintenance(self.data_dir, own_owner=own_owner)
        return await RecoverStorage(self.backend.unit_of_work, maintenance)()

    async def crashed_put(self, data: bytes, storage: FileSystemChatStorage | None = None) -> None:
        """A put swapped into place whose process died before settling it."""
        storage = storage or self.storage
        staged = await storage.stage(chunks(data), limit_bytes=10_000)
        await storage.put_attachment(self.chat, NAME, staged)

    def leftovers(self) -> list[str]:
        return sorted(
            p.name for area in ('.staging', '.trash') for p in (self.data_dir / area).iterdir()
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    backend = SqliteMetadataBackend(data_dir / 'metadata.db', pool_size=2)
    await backend.connect()
    await backend.migrate()
    storage = FileSystemChatStorage(data_dir)
    uow, clock, ids = backend.unit_of_work, SystemClock(), UuidGenerator()
    await EnsureWorkspace(uow, clock, ids, 1_000_000)(USER_ID)
    chat = await CreateChat(uow, storage, clock, ids)(USER_ID, 'recovery')
    await UploadAttachment(uow, storage, clock, ids, 10_000)(
        USER_ID, chat.chat_id, NAME.value, None, chunks(OLD)
    )
    try:
        yield World(backend, data_dir, storage, chat)
    finally:
        await storage.close()
        await backend.close()


async def test_an_uncommitted_replace_is_rolled_back(world: World) -> None:
    await world.crashed_put(NEW)
    assert world.path.read_bytes() == NEW

    report = await world.recover()

    assert world.path.read_bytes() == OLD
    assert world.leftovers() == []
    assert report.rolled_back == 1


async def test_a_committed_replace_keeps_the_new_bytes_and_drops_the_backup(
    world: World,
) -> None:
    await world.crashed_put(NEW)
    async with world.backend.unit_of_work() as uow:  # the metadata commit did happen
        old = await uow.chat_files.get_by_chat_id_and_name(world.chat.chat_id, NAME)
        assert old is not None
        digest = hashlib.sha256(NEW).hexdigest()
        await uow.chat_files.save(replace(old, sha256=digest, size_bytes=len(NEW)))
        await uow.workspaces.add_used_bytes(world.chat.workspace_id, len(NEW) - len(OLD))
        await uow.commit()

    report = await world.recover()

    assert world.path.read_bytes() == NEW
    assert world.leftovers() == []
    assert (report.committed, report.usage_fixed) == (1, 0)


async def test_a_replaced_file_deleted_since_does_not_come_back(world: World) -> None:
    """A put crashed between its swap and its commit; another process then deleted the
    name (committed). The old file must not come back without a record, outside the
    quota and out of the API's reach."""
    await world.crashed_put(NEW, storage=FileSystemChatStorage(world.data_dir))
    async with world.backend.unit_of_work() as uow:
        old = await uow.chat_files.get_by_chat_id_and_name(world.chat.chat_id, NAME)
        assert old is not None
    await DeleteAttachment(world.backend.unit_of_work, world.storage, SystemClock())(
        USER_ID, world.chat.chat_id, old.file_id
    )
    assert not world.path.exists()

    report = await world.recover()

    assert not world.path.exists()
    assert world.leftovers() == []
    assert (report.rolled_back, report.usage_fixed) == (1, 0)


async def test_an_uncommitted_put_over_a_planted_directory_puts_it_back(world: World) -> None:
    other = ChatAttachmentName('planted')
    planted = world.storage.attachment_path(world.chat, other)
    planted.mkdir()
    (planted / 'inside').write_bytes(b'the sandbox made this')
    staged = await world.storage.stage(chunks(NEW), limit_bytes=10_000)
    await world.storage.put_attachment(world.chat, other, staged)  # then the crash
    assert planted.read_bytes() == NEW

    report = await world.recover()

    assert (planted / 'inside').read_bytes() == b'the sandbox made this'
    assert world.leftovers() == []
    assert report.rolled_back == 1


async def test_a_replaced_file_edited_in_place_comes_back(world: World) -> None:
    """The rows still name the file (a sandbox appended to it in place): an uncommitted
    put gives it back as it was, edits and all, never deletes it."""
    with world.path.open('ab') as edited:
        edited.write(b' + notes the sandbox added')
    before = world.path.read_bytes()
    await world.crashed_put(NEW, storage=FileSystemChatStorage(world.data_dir))

    await world.recover()

    assert world.path.read_bytes() == before
    assert world.leftovers() == []


async def test_a_sandbox_file_replaced_by_an_uncommitted_upload_comes_back(world: World) -> None:
    """Recovery never deletes a file it did not write (ADR 016)."""
    name = ChatAttachmentName('sandbox-output.csv')
    path = world.storage.attachment_path(world.chat, name)
    path.write_bytes(b'the sandbox wrote this')  # no row
    staged = await world.storage.stage(chunks(NEW), limit_bytes=10_000)
    await world.storage.put_attachment(world.chat, name, staged)  # then the crash

    await world.recover()

    assert path.read_bytes() == b'the sandbox wrote this'
    assert world.leftovers() == []


async def test_an_uncommitted_history_put_that_replaced_nothing_is_removed(world: World) -> None:
    history = world.storage.history_path(world.chat)
    history.unlink()  # damage, or a sandbox
    staged = await world.storage.stage(chunks(NEW), limit_bytes=10_000)
    await world.storage.put_history(world.chat, staged)  # then the crash

    await world.recover()

    assert not history.exists()
    assert world.leftovers() == []


async def test_an_uncommitted_new_file_is_removed(world: World) -> None:
    other = ChatAttachmentName('new.txt')
    staged = await world.storage.stage(chunks(NEW), limit_bytes=10_000)
    await world.storage.put_attachment(world.chat, other, staged)

    await world.recover()

    assert not world.storage.attachment_path(world.chat, other).exists()
    assert world.leftovers() == []


async def test_an_uncommitted_chat_delete_is_put_back(world: World) -> None:
    await world.storage.delete_chat(world.chat)
    assert not world.path.exists()

    await world.recover()

    assert world.path.read_bytes() == OLD
    assert world.leftovers() == []


async def test_an_uncommitted_append_tail_is_cut(world: World) -> None:
    chat = replace(world.chat, history_bytes=0)
    staged = await world.storage.stage(chunks(b'never committed'), limit_bytes=10_000)
    await world.storage.append_history(chat, staged)
    history = world.storage.history_path(chat)
    assert history.read_bytes() == b'never committed'

    report = await world.recover()

    assert history.read_bytes() == b''
    assert (report.tails_cut, world.leftovers()) == (1, [])


async def test_an_uncommitted_history_put_with_an_append_on_top_is_rolled_back(
    world: World,
) -> None:
    """A group (ADR 024) can apply an append on top of a history put that commits with
    it: both crashed before their `COMMIT`, so the committed history comes back whole."""
    committed = await WriteHistory(
        world.backend.unit_of_work, world.storage, SystemClock(), 10_000
    )(USER_ID, world.chat.chat_id, chunks(OLD))
    staged = await world.storage.stage(chunks(NEW), limit_bytes=10_000)
    await world.storage.put_history(committed, staged)
    # the append read the put's row in the group's transaction
    put = replace(
        committed, history_bytes=len(NEW), history_revision=committed.history_revision + 1
    )
    staged = await world.storage.stage(chunks(b' and a tail'), limit_bytes=10_000)
    await world.storage.append_history(put, staged)
    history = world.storage.history_path(world.chat)
    assert history.read_bytes() == NEW + b' and a tail'

    report = await world.recover()

    assert history.read_bytes() == OLD
    assert world.leftovers() == []
    assert (report.rolled_back, report.tails_cut, report.usage_fixed) == (1, 0, 0)


class _CommitAnswerLost:
    """A unit of work whose commit answers `CommitOutcomeUnknownError`, as a connection
    lost around `COMMIT` would (ADR 025): after committing, or without committing."""

    def __init__(self, unit: UnitOfWork, *, committed: bool) -> None:
        self._unit = unit
        self._committed = committed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._unit, name)

    async def __aenter__(self) -> Self:
        await self._unit.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._unit.__aexit__(exc_type, exc, tb)

    async def commit(self, pending: PendingSync | None = None) -> None:
        if self._committed:
            await self._unit.commit(pending)
        elif pending is not None:
            pending.sync()
        raise CommitOutcomeUnknownError


@pytest.mark.parametrize('committed', [False, True], ids=['did not commit', 'committed'])
async def test_a_history_put_in_doubt_is_settled_before_the_next_append(
    world: World, committed: bool
) -> None:
    """An append cuts history.md to the rows' length and writes on: over the put's bytes
    when the put did not commit. The next history write settles the put first, by the
    row it reads under the lock (ADR 025)."""
    uow, clock, in_doubt = world.backend.unit_of_work, SystemClock(), HistoriesInDoubt()
    write = WriteHistory(uow, world.storage, clock, 10_000, in_doubt=in_doubt)
    append = AppendHistory(uow, world.storage, clock, 10_000, in_doubt=in_doubt)
    await write(USER_ID, world.chat.chat_id, chunks(OLD))

    def losing(**kwargs: Any) -> UnitOfWork:
        unit = uow(**kwargs)
        return _CommitAnswerLost(unit, committed=committed) if kwargs.get('group') else unit

    with pytest.raises(CommitOutcomeUnknownError):
        await WriteHistory(losing, world.storage, clock, 10_000, in_doubt=in_doubt)(
            USER_ID, world.chat.chat_id, chunks(NEW)
        )
    history = world.storage.history_path(world.chat)
    assert history.read_bytes() == NEW  # left as the put made it

    appended = await append(USER_ID, world.chat.chat_id, chunks(b' and a tail'))

    expected = (NEW if committed else OLD) + b' and a tail'
    assert history.read_bytes() == expected
    assert appended.history_bytes == len(expected)
    assert world.leftovers() == []
    report = await world.recover()
    assert history.read_bytes() == expected
    assert (report.rolled_back, report.tails_cut, report.usage_fixed) == (0, 0, 0)


@pytest.mark.parametrize('committed', [False, True], ids=['did not commit', 'committed'])
@pytest.mark.parametrize('crashed', [False, True], ids=['in doubt', 'crashed'])
async def test_another_process_s_history_put_is_settled_before_an_append(
    world: World, tmp_path: Path, *, committed: bool, crashed: bool
) -> None:
    """A put another process left (in doubt there, or swapped in before it crashed) is
    not in this process's list; the file's version mark shows it, so the append never
    cuts the put's bytes and writes on, which would lose the history."""
    uow, clock = world.backend.unit_of_work, SystemClock()
    other = FileSystemChatStorage(world.data_dir)  # another replica on the data directory
    await WriteHistory(uow, other, clock, 10_000)(USER_ID, world.chat.chat_id, chunks(OLD))

    def losing(**kwargs: Any) -> UnitOfWork:
        unit = uow(**kwargs)
        return _CommitAnswerLost(unit, committed=committed) if kwargs.get('group') else unit

    with pytest.raises(CommitOutcomeUnknownError):
        await WriteHistory(losing, other, clock, 10_000)(USER_ID, world.chat.chat_id, chunks(NEW))
    history = world.storage.history_path(world.chat)
    assert history.read_bytes() == NEW
    if crashed:
        await other.close()
    maintenance = FileSystemMaintenance(world.data_dir)
    in_doubt = HistoriesInDoubt(maintenance)  # this process's: it knows nothing of the put
    append = AppendHistory(uow, world.storage, clock, 10_000, in_doubt=in_doubt)

    appended = await append(USER_ID, world.chat.chat_id, chunks(b' and a tail'))

    expected = (NEW if committed else OLD) + b' and a tail'
    assert history.read_bytes() == expected
    assert appended.history_bytes == len(expected)
    assert not await world.storage.history_in_doubt(appended)
    # a put that did commit is not in the way of anything: its backup waits for recovery
    assert len(world.leftovers()) == (2 if committed else 0)
    report = await world.recover()
    assert history.read_bytes() == expected
    assert world.leftovers() == []
    assert (report.committed, report.rolled_back, report.tails_cut) == (int(committed), 0, 0)
    assert report.usage_fixed == 0


@pytest.mark.parametrize('committed', [False, True], ids=['did not commit', 'committed'])
async def test_a_read_of_a_history_left_in_doubt_settles_it(
    world: World, *, committed: bool
) -> None:
    """A read whose file stays newer than its row takes the workspace lock and settles the
    chat's pending changes, instead of answering 503 until a write or a restart."""
    uow, clock = world.backend.unit_of_work, SystemClock()
    await WriteHistory(uow, world.storage, clock, 10_000)(USER_ID, world.chat.chat_id, chunks(OLD))

    def losing(**kwargs: Any) -> UnitOfWork:
        unit = uow(**kwargs)
        return _CommitAnswerLost(unit, committed=committed) if kwargs.get('group') else unit

    other = FileSystemChatStorage(world.data_dir)  # another replica, crashed after this
    with pytest.raises(CommitOutcomeUnknownError):
        await WriteHistory(losing, other, clock, 10_000)(USER_ID, world.chat.chat_id, chunks(NEW))
    await other.close()
    settle = SettleChatChanges(uow, FileSystemMaintenance(world.data_dir), world.storage)

    content = await ReadHistory(uow, world.storage, settle)(USER_ID, world.chat.chat_id)

    read = b''.join([chunk async for chunk in content.chunks])
    assert read == (NEW if committed else OLD)
    # a put that did commit is read as it is; its backup waits for recovery
    assert len(world.leftovers()) == (2 if committed else 0)


async def test_a_download_of_a_file_a_crashed_replica_was_replacing_settles_it(
    world: World,
) -> None:
    """The other replica swapped its file in and died before its commit: a download of
    the recorded file puts the old one back under the lock instead of a 503 until that
    replica restarts."""
    await world.crashed_put(NEW, storage=FileSystemChatStorage(world.data_dir))
    async with world.backend.unit_of_work(write=False) as unit:
        old = await unit.chat_files.get_by_chat_id_and_name(world.chat.chat_id, NAME)
    assert old is not None
    uow = world.backend.unit_of_work
    settle = SettleChatChanges(uow, FileSystemMaintenance(world.data_dir), world.storage)

    content = await ReadAttachment(uow, world.storage, settle)(
        USER_ID, world.chat.chat_id, old.file_id
    )

    assert b''.join([chunk async for chunk in content.open()]) == OLD
    assert world.path.read_bytes() == OLD
    assert world.leftovers() == []


async def test_a_mark_a_sandbox_moved_over_a_file_is_dropped_not_a_503(world: World) -> None:
    """`mv other.txt report.pdf` in the chat directory carries the other file's version
    mark to a recorded name: no write explains it, so the read drops it and goes on
    instead of answering 503 after 1.6 s."""
    other = ChatAttachmentName('other.txt')
    await UploadAttachment(
        world.backend.unit_of_work, world.storage, SystemClock(), UuidGenerator(), 10_000
    )(USER_ID, world.chat.chat_id, other.value, None, chunks(NEW))
    world.storage.attachment_path(world.chat, other).replace(world.path)
    async with world.backend.unit_of_work(write=False) as unit:
        record = await unit.chat_files.get_by_chat_id_and_name(world.chat.chat_id, NAME)
    assert record is not None
    uow = world.backend.unit_of_work
    settle = SettleChatChanges(uow, FileSystemMaintenance(world.data_dir), world.storage)
    read = ReadAttachment(uow, world.storage, settle)

    content = await read(USER_ID, world.chat.chat_id, record.file_id)

    assert b''.join([chunk async for chunk in content.open()]) == NEW[: len(OLD)]
    assert VERSION_XATTR not in os.listxattr(world.path)  # dropped: no repair next time


async def test_a_history_mark_no_put_explains_does_not_stop_appends_or_reads(
    world: World,
) -> None:
    uow, clock = world.backend.unit_of_work, SystemClock()
    await WriteHistory(uow, world.storage, clock, 10_000)(USER_ID, world.chat.chat_id, chunks(OLD))
    history = world.storage.history_path(world.chat)
    os.setxattr(history, VERSION_XATTR, b'h:999')  # a sandbox, or a copy of another chat's
    maintenance = FileSystemMaintenance(world.data_dir)
    in_doubt = HistoriesInDoubt(maintenance)

    await AppendHistory(uow, world.storage, clock, 10_000, in_doubt=in_doubt)(
        USER_ID, world.chat.chat_id, chunks(b'!')
    )
    os.setxattr(history, VERSION_XATTR, b'h:999')
    settle = SettleChatChanges(uow, maintenance, world.storage)
    content = await ReadHistory(uow, world.storage, settle)(USER_ID, world.chat.chat_id)

    assert b''.join([chunk async for chunk in content.chunks]) == OLD + b'!'


class _LiveWriteWhileSettling(FileSystemMaintenance):
    """Starts a live process's write just before a change is settled, and gives it every
    chance to commit first."""

    def __init__(self, data_dir: Path, write: Callable[[], Awaitable[Chat]]) -> None:
        super().__init__(data_dir)
        self._write = write
        self.written: asyncio.Task[Chat] | None = None

    async def settle(
        self, change: PendingChange, *, committed: bool, recorded_sha256: str | None = None
    ) -> None:
        self.written = asyncio.ensure_future(self._write())
        await asyncio.sleep(0.3)
        await super().settle(change, committed=committed, recorded_sha256=recorded_sha256)


async def test_a_write_of_a_live_process_waits_until_the_change_is_settled(
    world: World,
) -> None:
    """Another process serving while this one recovers (not `alone`): its history write
    must not commit between the check and the settling, or the undone put (the old file
    put back) would overwrite it."""
    uow, clock = world.backend.unit_of_work, SystemClock()
    base = await WriteHistory(uow, world.storage, clock, 10_000)(
        USER_ID, world.chat.chat_id, chunks(OLD)
    )
    staged = await world.storage.stage(chunks(NEW), limit_bytes=10_000)
    await world.storage.put_history(base, staged)  # swapped in, its process died
    live = OwnerLock(world.data_dir)
    storage = FileSystemChatStorage(world.data_dir, owner=live.owner)
    write = WriteHistory(uow, storage, clock, 10_000)
    maintenance = _LiveWriteWhileSettling(
        world.data_dir, lambda: write(USER_ID, world.chat.chat_id, chunks(b'live and committed'))
    )
    try:
        report = await RecoverStorage(uow, maintenance)()
        assert maintenance.written is not None
        written = await maintenance.written
    finally:
        live.release()
        await storage.close()

    assert report.rolled_back == 1
    history = world.storage.history_path(world.chat)
    assert history.read_bytes() == b'live and committed'
    assert written.history_bytes == len(b'live and committed')
    assert world.leftovers() == []


@pytest.mark.postgres
async def test_a_live_replica_waits_for_the_workspace_lock_while_a_change_is_settled(
    tmp_path: Path, fresh_postgres_dsn: str
) -> None:
    """The same on PostgreSQL, where only the workspace row's lock keeps another
    replica's write out between the check and the settling (SQLite locks the whole store
    for any write unit)."""
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    recovering = PostgresMetadataBackend(fresh_postgres_dsn, pool_size=2)
    replica = PostgresMetadataBackend(fresh_postgres_dsn, pool_size=2)
    storage = FileSystemChatStorage(data_dir)
    live = OwnerLock(data_dir)
    live_storage = FileSystemChatStorage(data_dir, owner=live.owner)
    try:
        await recovering.migrate()
        uow, clock, ids = recovering.unit_of_work, SystemClock(), UuidGenerator()
        await EnsureWorkspace(uow, clock, ids, 1_000_000)(USER_ID)
        chat = await CreateChat(uow, storage, clock, ids)(USER_ID, 'recovery')
        base = await WriteHistory(uow, storage, clock, 10_000)(USER_ID, chat.chat_id, chunks(OLD))
        staged = await storage.stage(chunks(NEW), limit_bytes=10_000)
        await storage.put_history(base, staged)  # swapped in, its process died
        write = WriteHistory(replica.unit_of_work, live_storage, clock, 10_000)
        maintenance = _LiveWriteWhileSettling(
            data_dir, lambda: write(USER_ID, chat.chat_id, chunks(b'live and committed'))
        )

        report = await RecoverStorage(uow, maintenance)()

        assert maintenance.written is not None
        written = await maintenance.written
        assert report.rolled_back == 1
        assert storage.history_path(chat).read_bytes() == b'live and committed'
        assert written.history_bytes == len(b'live and committed')
    finally:
        live.release()
        await live_storage.close()
        await storage.close()
        await replica.close()
        await recovering.close()


async def test_the_changes_of_a_live_process_are_left_alone(world: World) -> None:
    live = OwnerLock(world.data_dir)
    storage = FileSystemChatStorage(world.data_dir, owner=live.owner)
    try:
        await world.crashed_put(NEW, storage)
        await storage.stage(chunks(b'an upload in progress'), limit_bytes=10_000)
        before = world.leftovers()

        report = await world.recover()

        assert world.path.read_bytes() == NEW  # its metadata commit may still come
        assert world.leftovers() == before
        assert len(before) == 3  # staged upload, backup, sidecar
        assert report == RecoveryReport()
    finally:
        live.release()
        await storage.close()

    await world.recover()  # the process has died now

    assert world.path.read_bytes() == OLD
    assert world.leftovers() == []


async def test_recoveries_started_together_settle_each_change_once(world: World) -> None:
    await world.crashed_put(NEW)

    reports = await asyncio.gather(*(world.recover() for _ in range(4)))

    assert world.path.read_bytes() == OLD
    assert world.leftovers() == []
    assert sum(r.rolled_back for r in reports) == 1


async def test_an_empty_orphan_chat_directory_goes_and_one_with_files_stays(
    world: World,
) -> None:
    chats_dir = world.storage.chat_dir(world.chat).parent
    empty, full = chats_dir / str(uuid4()), chats_dir / str(uuid4())
    for directory in (empty, full):
        directory.mkdir()
        (directory / 'history.md').touch()
    (full / 'sandbox.txt').write_bytes(b'not ours to delete')

    report = await world.recover()

    assert not empty.exists()
    assert (full / 'sandbox.txt').read_bytes() == b'not ours to delete'
    assert report.directories_removed == 1


async def test_every_chat_directory_is_tidied_batch_by_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recover_storage, 'CHAT_BATCH', 2)  # 7 directories: 4 batches
    ids, clock = UuidGenerator(), SystemClock()
    create = CreateChat(world.backend.unit_of_work, world.storage, clock, ids)
    chats = [world.chat, *[await create(USER_ID, f'chat {index}') for index in range(4)]]
    for chat in chats:  # each with a committed append and a tail that never committed
        await AppendHistory(world.backend.unit_of_work, world.storage, clock, 10_000)(
            USER_ID, chat.chat_id, chunks(b'kept\n')
        )
        with world.storage.history_path(chat).open('ab') as history:
            history.write(b'never committed')
    chats_dir = world.storage.chat_dir(world.chat).parent
    orphans = [chats_dir / str(uuid4()) for _ in range(2)]
    for orphan in orphans:
        orphan.mkdir()
        (orphan / 'history.md').touch()

    report = await world.recover()

    assert (report.tails_cut, report.directories_removed) == (5, 2)
    assert [world.storage.history_path(chat).read_bytes() for chat in chats] == [b'kept\n'] * 5
    assert not any(orphan.exists() for orphan in orphans)


async def test_used_bytes_is_recomputed_from_the_rows(world: World) -> None:
    async with world.backend.unit_of_work() as uow:
        workspace = await uow.workspaces.get(world.chat.workspace_id)
        assert workspace is not None
        await uow.workspaces.save(replace(workspace, used_bytes=999))
        await uow.commit()

    report = await world.recover()

    async with world.backend.unit_of_work(write=False) as uow:
        workspace = await uow.workspaces.get(world.chat.workspace_id)
    assert workspace is not None
    assert (workspace.used_bytes, report.usage_fixed) == (len(OLD), 1)


async def test_a_clean_store_is_left_as_it_is(world: World) -> None:
    await AppendHistory(world.backend.unit_of_work, world.storage, SystemClock(), 10_000)(
        USER_ID, world.chat.chat_id, chunks(b'# hi\n')
    )

    report = await world.recover()

    assert report == RecoveryReport()
    assert world.path.read_bytes() == OLD
    assert world.storage.history_path(world.chat).read_bytes() == b'# hi\n'

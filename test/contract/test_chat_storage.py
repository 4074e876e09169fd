"""Contract of the `ChatStorage` port, on the real file system of a temporary directory.

Tests that take `storage` hold for every implementation of the port; tests that take
`file_storage` check the on-disk layout and guarantees of `FileSystemChatStorage`.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from adapter.file_storage import (
    HELD_STAGE_BYTES,
    FileSystemChatStorage,
)
from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.content import ByteRange, StagedContent
from domain.error import (
    ContentLimitExceededError,
    InsufficientStorageError,
    ServiceUnavailableError,
    StoredContentMissingError,
    StoredVersionChangingError,
)
from usecase.interface import ChatStorage

WORKSPACE_ID = UUID('5f0c6a52-1d0e-4c3b-9a57-0b7c1e2d3f40')
CHAT_ID = UUID('8a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d')
OTHER_CHAT_ID = UUID('0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a')
CREATED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHAT = Chat(
    chat_id=CHAT_ID,
    workspace_id=WORKSPACE_ID,
    created_at=CREATED_AT,
    updated_at=CREATED_AT,
)
OTHER_CHAT = replace(CHAT, chat_id=OTHER_CHAT_ID)
NAME = ChatAttachmentName('report.pdf')
OTHER_NAME = ChatAttachmentName('notes.txt')
CHUNK_BYTES = 8
LIMIT = 1024


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class CountingStream:
    """A stream of equal chunks that counts how many were pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.pulled = 0

    def __aiter__(self) -> 'CountingStream':
        return self

    async def __anext__(self) -> bytes:
        if self.pulled == self.count:
            raise StopAsyncIteration
        self.pulled += 1
        return self.chunk


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b''.join([chunk async for chunk in stream])


async def stage(storage: ChatStorage, data: bytes) -> StagedContent:
    return await storage.stage(chunks(data), limit_bytes=LIMIT)


async def put(storage: ChatStorage, data: bytes, name: ChatAttachmentName = NAME) -> None:
    change = await storage.put_attachment(CHAT, name, await stage(storage, data))
    await change.commit()


async def write_history(storage: ChatStorage, data: bytes) -> Chat:
    """Replace the history and return the chat as its metadata would be afterwards."""
    change = await storage.put_history(CHAT, await stage(storage, data))
    await change.commit()
    return replace(CHAT, history_bytes=len(data), history_revision=1)


def open_paths() -> list[str]:
    """What the descriptors of this process point at."""
    paths = []
    for fd in Path('/proc/self/fd').iterdir():
        with contextlib.suppress(OSError):  # the descriptor of the listing itself
            paths.append(str(fd.readlink()))
    return paths


def listing(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / 'data'


@pytest.fixture
def file_storage(data_dir: Path) -> FileSystemChatStorage:
    return FileSystemChatStorage(data_dir, chunk_bytes=CHUNK_BYTES)


@pytest.fixture(params=['file_system'])
def storage(request: pytest.FixtureRequest, file_storage: FileSystemChatStorage) -> ChatStorage:
    implementations: dict[str, ChatStorage] = {'file_system': file_storage}
    return implementations[request.param]


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files and directories fsynced during the test, in order (fsync still runs)."""
    paths: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        paths.append(Path(f'/proc/self/fd/{fd}').readlink())
        real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', recording_fsync)
    return paths


@pytest.fixture
def chat_dir(file_storage: FileSystemChatStorage) -> Path:
    return file_storage.chat_dir(CHAT)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, so that writes hit a real ENOSPC."""
    mount_point = tmp_path / 'small-disk'
    mount_point.mkdir()
    mounted = subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = mounted.stderr.decode(errors='replace').strip()
        pytest.skip(f'cannot mount a 1 MiB tmpfs to fill up (needs root): {reason}')
    try:
        yield mount_point
    finally:
        subprocess.run(['umount', '--lazy', str(mount_point)], check=False)


@pytest.fixture
def full_disk_storage(small_disk: Path) -> FileSystemChatStorage:
    return FileSystemChatStorage(small_disk / 'data', chunk_bytes=64 * 1024)


# --- staging ----------------------------------------------------------------------------


async def test_stage_returns_the_size_and_sha256_of_the_stream(storage: ChatStorage) -> None:
    parts = [b'first chunk, ', b'second', b'', b' and the third']

    staged = await storage.stage(chunks(*parts), limit_bytes=LIMIT)

    data = b''.join(parts)
    assert (staged.size_bytes, staged.sha256) == (len(data), hashlib.sha256(data).hexdigest())


async def test_stage_writes_the_stream_into_the_staging_area(
    file_storage: FileSystemChatStorage,
) -> None:
    staged = await file_storage.stage(chunks(b'a' * 20, b'b' * 3), limit_bytes=LIMIT)

    assert (file_storage.staging_dir / staged.token).read_bytes() == b'a' * 20 + b'b' * 3


async def test_stage_accepts_a_stream_of_exactly_the_limit(storage: ChatStorage) -> None:
    staged = await storage.stage(chunks(b'x' * 10), limit_bytes=10)

    assert staged.size_bytes == 10


async def test_stage_over_the_limit_raises_content_limit_exceeded(storage: ChatStorage) -> None:
    with pytest.raises(ContentLimitExceededError) as raised:
        await storage.stage(chunks(b'x' * 11), limit_bytes=10)

    assert raised.value.limit_bytes == 10


async def test_stage_over_the_limit_leaves_no_staging_file(
    file_storage: FileSystemChatStorage,
) -> None:
    with pytest.raises(ContentLimitExceededError):
        await file_storage.stage(CountingStream(b'x' * 4, count=10), limit_bytes=10)

    assert listing(file_storage.staging_dir) == []


async def test_stage_stops_pulling_the_stream_once_over_the_limit(storage: ChatStorage) -> None:
    stream = CountingStream(b'x' * 4, count=10)

    with pytest.raises(ContentLimitExceededError):
        await storage.stage(stream, limit_bytes=10)

    assert stream.pulled == 3


async def test_stage_of_a_failing_stream_leaves_no_staging_file(
    file_storage: FileSystemChatStorage,
) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b'x' * 20
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await file_storage.stage(failing(), limit_bytes=LIMIT)

    assert listing(file_storage.staging_dir) == []


async def test_stage_cancelled_mid_stream_removes_the_partial_file(
    file_storage: FileSystemChatStorage,
) -> None:
    first_batch_written = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b'x' * 20
        first_batch_written.set()
        await asyncio.Event().wait()
        yield b'never'

    task = asyncio.create_task(file_storage.stage(stalled(), limit_bytes=LIMIT))
    await first_batch_written.wait()
    assert len(listing(file_storage.staging_dir)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert listing(file_storage.staging_dir) == []


async def test_stage_on_a_full_disk_raises_insufficient_storage(
    full_disk_storage: FileSystemChatStorage,
) -> None:
    with pytest.raises(InsufficientStorageError):
        await full_disk_storage.stage(CountingStream(b'x' * 65536, count=32), limit_bytes=1 << 30)


async def test_stage_on_a_full_disk_leaves_no_staging_file(
    full_disk_storage: FileSystemChatStorage,
) -> None:
    with pytest.raises(InsufficientStorageError):
        await full_disk_storage.stage(CountingStream(b'x' * 65536, count=32), limit_bytes=1 << 30)

    assert listing(full_disk_storage.staging_dir) == []


async def test_stage_into_an_unusable_staging_area_raises_service_unavailable(
    file_storage: FileSystemChatStorage,
) -> None:
    file_storage.staging_dir.rmdir()
    file_storage.staging_dir.write_bytes(b'not a directory')

    with pytest.raises(ServiceUnavailableError):
        await file_storage.stage(chunks(b'x'), limit_bytes=LIMIT)


async def test_discard_removes_the_staged_file(file_storage: FileSystemChatStorage) -> None:
    staged = await stage(file_storage, b'unused')

    await file_storage.discard(staged)

    assert listing(file_storage.staging_dir) == []


async def test_discard_of_a_missing_staged_file_is_no_error(storage: ChatStorage) -> None:
    staged = await stage(storage, b'unused')
    await storage.discard(staged)

    await storage.discard(staged)


# --- chats ------------------------------------------------------------------------------


async def test_ensure_chat_creates_an_empty_history(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)

    assert await read_all(storage.read_history(CHAT)) == b''


async def test_ensure_chat_lays_out_the_chat_directory(
    file_storage: FileSystemChatStorage,
    data_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)

    chat_dir = data_dir / 'workspaces' / str(WORKSPACE_ID) / 'chats' / str(CHAT_ID)
    assert listing(chat_dir) == ['history.md']


async def test_ensure_chat_fsyncs_every_new_entry_and_the_levels_above_once_a_process(
    data_dir: Path, synced: list[Path]
) -> None:
    storage = FileSystemChatStorage(data_dir, chunk_bytes=CHUNK_BYTES)
    workspace = storage.workspace_dir(WORKSPACE_ID)
    chats, workspaces = workspace / 'chats', data_dir / 'workspaces'
    second = replace(CHAT, chat_id=UUID(int=2))
    other_workspace = replace(CHAT, chat_id=UUID(int=3), workspace_id=UUID(int=4))

    pending = await storage.ensure_chat(CHAT)
    assert synced == []  # left to the commit of the chat's row
    pending.sync()
    assert synced == [storage.chat_dir(CHAT), chats, workspace, workspaces]
    synced.clear()
    # the same workspace: only the new chat directory and its entry in `chats/`
    (await storage.ensure_chat(second)).sync()
    assert synced == [storage.chat_dir(second), chats]
    synced.clear()
    # a new workspace: its entry in `workspaces/` too
    (await storage.ensure_chat(other_workspace)).sync()
    other_chats = storage.workspace_dir(other_workspace.workspace_id) / 'chats'
    assert synced == [
        storage.chat_dir(other_workspace),
        other_chats,
        other_chats.parent,
        workspaces,
    ]
    synced.clear()
    # another process (or this one restarted) knows nothing of what was synced
    restarted = FileSystemChatStorage(data_dir, chunk_bytes=CHUNK_BYTES)
    (await restarted.ensure_chat(replace(CHAT, chat_id=UUID(int=5)))).sync()
    assert synced[2:] == [workspace, workspaces]


async def test_ensure_chat_keeps_an_existing_history(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    chat = await write_history(storage, b'# kept')

    await storage.ensure_chat(chat)

    assert await read_all(storage.read_history(chat)) == b'# kept'


async def test_data_dir_holds_only_the_service_areas_beside_workspaces(
    file_storage: FileSystemChatStorage,
    data_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await stage(file_storage, b'pending')

    assert listing(data_dir) == ['.staging', '.trash', 'workspaces']


# --- attachments: put -------------------------------------------------------------------


async def test_put_attachment_places_the_content_under_its_name(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)

    await put(storage, b'the report')

    assert await read_all(storage.read_attachment(CHAT, NAME)) == b'the report'


async def test_put_attachment_writes_a_regular_file_named_as_given(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    name = ChatAttachmentName('Résumé (final) #2.md')
    await file_storage.ensure_chat(CHAT)

    await put(file_storage, b'cv', name)

    assert (chat_dir / 'Résumé (final) #2.md').read_bytes() == b'cv'


async def test_every_file_of_a_chat_directory_is_readable_by_other_users(
    file_storage: FileSystemChatStorage, chat_dir: Path
) -> None:
    """A sandbox may mount the chat directory under another uid: what a write places there
    gets the new `history.md`'s mode (0644 less the umask), not a private one."""
    await file_storage.ensure_chat(CHAT)
    new_history_mode = (chat_dir / 'history.md').stat().st_mode & 0o777
    attachment = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'x'))
    await attachment.commit()
    history = await file_storage.put_history(CHAT, await stage(file_storage, b'# new'))
    await history.commit()

    modes = {path.name: path.stat().st_mode & 0o777 for path in chat_dir.iterdir()}
    assert modes == {'history.md': new_history_mode, NAME.value: new_history_mode}


async def test_put_attachment_replaces_a_file_of_the_same_name(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'old')

    await put(storage, b'new and longer')

    assert await read_all(storage.read_attachment(CHAT, NAME)) == b'new and longer'


async def test_replacing_keeps_the_old_file_whole_for_a_reader_that_opened_it(
    storage: ChatStorage,
) -> None:
    await storage.ensure_chat(CHAT)
    old = b'old content spanning several chunks'
    await put(storage, old)
    reader = storage.read_attachment(CHAT, NAME)
    first = await anext(reader)

    await put(storage, b'NEW CONTENT')

    assert first + await read_all(reader) == old


async def test_put_attachment_rollback_restores_the_old_content(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'old')
    change = await storage.put_attachment(CHAT, NAME, await stage(storage, b'new'))

    await change.rollback()

    assert await read_all(storage.read_attachment(CHAT, NAME)) == b'old'


async def test_put_attachment_rollback_restores_the_very_same_file(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'old')
    path = file_storage.attachment_path(CHAT, NAME)
    before = path.stat()
    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'new'))

    await change.rollback()

    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_nlink) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_nlink,
    )


async def test_put_attachment_rollback_of_a_new_name_removes_the_file(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'new'))

    await change.rollback()

    assert listing(chat_dir) == ['history.md']


async def test_chat_directory_holds_only_history_and_attachments_while_replacing(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    expected = ['history.md', 'report.pdf']
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'old')
    listings = [listing(chat_dir)]

    staged = await stage(file_storage, b'new')
    listings.append(listing(chat_dir))
    change = await file_storage.put_attachment(CHAT, NAME, staged)
    listings.append(listing(chat_dir))
    await change.rollback()
    listings.append(listing(chat_dir))
    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'new'))
    listings.append(listing(chat_dir))
    await change.commit()
    listings.append(listing(chat_dir))

    assert listings == [expected] * 6


async def test_put_attachment_keeps_a_backup_described_by_a_sidecar_until_settled(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'old')
    staged = await stage(file_storage, b'new')

    await file_storage.put_attachment(CHAT, NAME, staged)

    [backup, sidecar] = sorted(file_storage.trash_dir.iterdir(), key=lambda p: p.suffix)
    record = json.loads(sidecar.read_bytes())
    assert (backup.read_bytes(), sidecar.name, record['operation'], record['path']) == (
        b'old',
        f'{backup.name}.json',
        'put_attachment',
        f'workspaces/{WORKSPACE_ID}/chats/{CHAT_ID}/report.pdf',
    )


async def test_put_attachment_sidecar_names_the_new_content(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    staged = await stage(file_storage, b'new')

    await file_storage.put_attachment(CHAT, NAME, staged)

    [sidecar] = file_storage.trash_dir.glob('*.json')
    record = json.loads(sidecar.read_bytes())
    assert (record['sha256'], record['size_bytes'], record['replaced']) == (
        staged.sha256,
        3,
        False,
    )


async def test_put_attachment_commit_leaves_the_service_areas_empty(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'old')

    await put(file_storage, b'new')

    assert listing(file_storage.trash_dir) + listing(file_storage.staging_dir) == []


async def test_put_attachment_rollback_leaves_the_service_areas_empty(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'old')
    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'new'))

    await change.rollback()

    assert listing(file_storage.trash_dir) + listing(file_storage.staging_dir) == []


async def test_put_attachment_cancelled_is_rolled_back_before_the_caller_goes_on(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    """The rollback runs while the caller still holds the writer's lock (ADR 011): a
    writer queued behind it must not commit over the path and then lose its bytes to a
    rollback that comes later. So the cancellation reaches the caller once it is done."""
    await file_storage.ensure_chat(CHAT)
    staged = await stage(file_storage, b'new')
    task = asyncio.create_task(file_storage.put_attachment(CHAT, NAME, staged))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (listing(chat_dir), listing(file_storage.trash_dir)) == (['history.md'], [])
    await file_storage.close()
    assert (listing(chat_dir), listing(file_storage.trash_dir)) == (['history.md'], [])


async def test_a_rollback_runs_to_its_end_before_a_cancelled_caller_goes_on(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    first = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'old'))
    await first.commit()
    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'new'))
    task = asyncio.create_task(change.rollback())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (chat_dir / NAME.value).read_bytes() == b'old'
    assert listing(file_storage.trash_dir) == []


async def test_put_attachment_of_missing_staged_content_raises_stored_content_missing(
    storage: ChatStorage,
) -> None:
    await storage.ensure_chat(CHAT)
    staged = await stage(storage, b'new')
    await storage.discard(staged)

    with pytest.raises(StoredContentMissingError):
        await storage.put_attachment(CHAT, NAME, staged)


async def test_a_committed_change_cannot_be_rolled_back(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    change = await storage.put_attachment(CHAT, NAME, await stage(storage, b'new'))
    await change.commit()

    with pytest.raises(RuntimeError):
        await change.rollback()


# --- attachments: delete ----------------------------------------------------------------


async def test_delete_attachments_takes_the_files_out_of_the_chat_directory(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'one', NAME)
    await put(file_storage, b'two', OTHER_NAME)

    await file_storage.delete_attachments(CHAT, [NAME, OTHER_NAME])

    assert listing(chat_dir) == ['history.md']


async def test_delete_attachments_rollback_brings_the_files_back(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'one', NAME)
    await put(storage, b'two', OTHER_NAME)
    change = await storage.delete_attachments(CHAT, [NAME, OTHER_NAME])

    await change.rollback()

    restored = [await read_all(storage.read_attachment(CHAT, n)) for n in (NAME, OTHER_NAME)]
    assert restored == [b'one', b'two']


async def test_delete_attachments_commit_leaves_the_trash_empty(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'one', NAME)
    change = await file_storage.delete_attachments(CHAT, [NAME])

    await change.commit()

    assert listing(file_storage.trash_dir) == []


async def test_deleted_attachment_reads_as_missing(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'one')
    change = await storage.delete_attachments(CHAT, [NAME])
    await change.commit()

    with pytest.raises(StoredContentMissingError):
        await read_all(storage.read_attachment(CHAT, NAME))


async def test_delete_attachments_of_a_missing_name_is_no_error(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'two', OTHER_NAME)
    change = await file_storage.delete_attachments(CHAT, [NAME, OTHER_NAME])

    await change.commit()

    assert listing(chat_dir) == ['history.md']


# --- history ----------------------------------------------------------------------------


async def test_put_history_replaces_the_history(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await write_history(storage, b'# old')

    chat = await write_history(storage, b'# new history')

    assert await read_all(storage.read_history(chat)) == b'# new history'


async def test_put_history_rollback_restores_the_old_history(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    chat = await write_history(storage, b'# old')
    change = await storage.put_history(chat, await stage(storage, b'# new history'))

    await change.rollback()

    assert await read_all(storage.read_history(chat)) == b'# old'


async def test_put_history_sidecar_records_the_revision_it_replaces(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    chat = replace(CHAT, history_revision=7)

    await file_storage.put_history(chat, await stage(file_storage, b'# new'))

    [sidecar] = file_storage.trash_dir.glob('*.json')
    record = json.loads(sidecar.read_bytes())
    assert (record['operation'], record['history_revision']) == ('put_history', 7)


async def test_append_history_appends_at_history_bytes(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    chat = await write_history(storage, b'abc')
    change = await storage.append_history(chat, await stage(storage, b'def'))
    await change.commit()

    appended = replace(chat, history_bytes=6)
    assert await read_all(storage.read_history(appended)) == b'abcdef'


async def test_append_history_cuts_an_uncommitted_tail(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    chat = await write_history(storage, b'abc')
    # appended but never settled, as if the process had crashed before the metadata commit
    await storage.append_history(chat, await stage(storage, b'-lost tail-'))

    change = await storage.append_history(chat, await stage(storage, b'def'))
    await change.commit()

    assert await read_all(storage.read_history(replace(chat, history_bytes=6))) == b'abcdef'


async def test_append_history_rollback_truncates_to_history_bytes(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    chat = await write_history(file_storage, b'abc')
    change = await file_storage.append_history(chat, await stage(file_storage, b'def'))

    await change.rollback()

    assert file_storage.history_path(chat).read_bytes() == b'abc'


async def test_append_history_commit_removes_the_staged_file(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    change = await file_storage.append_history(CHAT, await stage(file_storage, b'def'))

    await change.commit()

    assert listing(file_storage.staging_dir) == []


async def test_only_a_durable_stage_fsyncs_the_staged_file(
    file_storage: FileSystemChatStorage, synced: list[Path]
) -> None:
    # larger than what is held in memory: a staged file, written but not fsynced
    copied = b'c' * (HELD_STAGE_BYTES + 1)
    durable = await file_storage.stage(chunks(b'kept'), limit_bytes=LIMIT)
    not_durable = await file_storage.stage(chunks(copied), limit_bytes=len(copied), durable=False)

    staged = [file_storage.staging_dir / s.token for s in (durable, not_durable)]
    assert [path for path in synced if path in staged] == staged[:1]
    assert (file_storage.staging_dir / not_durable.token).read_bytes() == copied
    assert not_durable.sha256 == hashlib.sha256(copied).hexdigest()


async def test_a_small_append_is_held_in_memory_and_leaves_no_file(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    chat = await write_history(file_storage, b'abc')
    held = await file_storage.stage(chunks(b'd', b'ef'), limit_bytes=LIMIT, durable=False)
    assert listing(file_storage.staging_dir) == []
    assert (held.size_bytes, held.sha256) == (3, hashlib.sha256(b'def').hexdigest())
    # only an append may take it: nothing else would make it durable
    with pytest.raises(ValueError, match='can only be appended'):
        await file_storage.put_history(chat, held)

    change = await file_storage.append_history(chat, held)
    assert file_storage.history_path(chat).read_bytes() == b'abcdef'
    await change.rollback()
    assert file_storage.history_path(chat).read_bytes() == b'abc'

    dropped = await file_storage.stage(chunks(b'gone'), limit_bytes=LIMIT, durable=False)
    await file_storage.discard(dropped)
    # discarded: its token names nothing any more, in memory or on disk
    with pytest.raises(StoredContentMissingError):
        await file_storage.append_history(chat, dropped)
    assert file_storage.history_path(chat).read_bytes() == b'abc'
    assert listing(file_storage.staging_dir) == []


@pytest.mark.parametrize('size', [3, HELD_STAGE_BYTES + 1], ids=['held', 'staged_file'])
async def test_an_append_leaves_the_fsync_of_the_history_to_its_sync(
    file_storage: FileSystemChatStorage, synced: list[Path], size: int
) -> None:
    await file_storage.ensure_chat(CHAT)
    staged = await file_storage.stage(chunks(b'a' * size), limit_bytes=size, durable=False)
    history = file_storage.history_path(CHAT)

    change = await file_storage.append_history(CHAT, staged)
    assert history.read_bytes() == b'a' * size
    assert history not in synced  # applied, not yet durable

    change.sync()
    assert synced.count(history) == 1
    await change.commit()
    assert synced.count(history) == 1


async def test_a_failed_sync_is_a_domain_error_and_the_change_still_rolls_back(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    change = await file_storage.append_history(CHAT, await stage(file_storage, b'def'))
    history = file_storage.history_path(CHAT)
    history.rename(history.with_name('moved.md'))

    with pytest.raises(StoredContentMissingError):
        change.sync()
    history.with_name('moved.md').rename(history)
    await change.rollback()
    assert history.read_bytes() == b''
    # settled: there is nothing left to make durable
    with pytest.raises(RuntimeError, match='already rolled_back'):
        change.sync()


async def test_append_history_removes_the_staged_file_once_applied(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    change = await file_storage.append_history(CHAT, await stage(file_storage, b'def'))

    # applied, not yet committed: the bytes are in history.md, the staged copy is gone
    assert listing(file_storage.staging_dir) == []
    assert file_storage.history_path(CHAT).read_bytes() == b'def'
    await change.rollback()
    assert file_storage.history_path(CHAT).read_bytes() == b''


async def test_append_history_rollback_removes_the_staged_file(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    change = await file_storage.append_history(CHAT, await stage(file_storage, b'def'))

    await change.rollback()

    assert listing(file_storage.staging_dir) == []


async def test_append_history_to_a_history_shorter_than_committed_raises_missing(
    storage: ChatStorage,
) -> None:
    await storage.ensure_chat(CHAT)
    staged = await stage(storage, b'def')

    with pytest.raises(StoredContentMissingError):
        await storage.append_history(replace(CHAT, history_bytes=10), staged)


async def test_read_history_stops_at_history_bytes(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    chat = await write_history(storage, b'committed|uncommitted tail')

    assert await read_all(storage.read_history(replace(chat, history_bytes=9))) == b'committed'


# --- chats and workspaces: delete ---------------------------------------------------------


async def test_delete_chat_takes_the_chat_directory_away(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'one')

    await file_storage.delete_chat(CHAT)

    assert not chat_dir.exists()


async def test_delete_chat_rollback_restores_history_and_attachments(
    storage: ChatStorage,
) -> None:
    await storage.ensure_chat(CHAT)
    chat = await write_history(storage, b'# history')
    await put(storage, b'one')
    change = await storage.delete_chat(chat)

    await change.rollback()

    restored = [
        await read_all(storage.read_history(chat)),
        await read_all(storage.read_attachment(chat, NAME)),
    ]
    assert restored == [b'# history', b'one']


async def test_delete_chat_commit_removes_the_chat_and_empties_the_trash(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'one')
    change = await file_storage.delete_chat(CHAT)

    await change.commit()

    assert (chat_dir.exists(), listing(file_storage.trash_dir)) == (False, [])


async def test_delete_chat_keeps_other_chats(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await storage.ensure_chat(OTHER_CHAT)
    change = await storage.delete_chat(CHAT)
    await change.commit()

    assert await read_all(storage.read_history(OTHER_CHAT)) == b''


async def test_delete_workspace_rollback_restores_every_chat(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await file_storage.ensure_chat(OTHER_CHAT)
    await put(file_storage, b'one')
    change = await file_storage.delete_workspace(WORKSPACE_ID)

    await change.rollback()

    chats_dir = file_storage.workspace_dir(WORKSPACE_ID) / 'chats'
    assert listing(chats_dir) == sorted([str(CHAT_ID), str(OTHER_CHAT_ID)])


async def test_delete_workspace_commit_removes_the_workspace_and_empties_the_trash(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'one')
    change = await file_storage.delete_workspace(WORKSPACE_ID)

    await change.commit()

    assert (listing(file_storage.workspaces_dir), listing(file_storage.trash_dir)) == ([], [])


async def test_delete_workspace_without_a_directory_changes_nothing(
    file_storage: FileSystemChatStorage,
    data_dir: Path,
) -> None:
    change = await file_storage.delete_workspace(WORKSPACE_ID)
    await change.rollback()

    assert [listing(data_dir / area) for area in ('.staging', '.trash', 'workspaces')] == [
        [],
        [],
        [],
    ]


# --- reads ------------------------------------------------------------------------------


async def test_read_attachment_yields_chunks_of_chunk_bytes(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'0123456789abcdefghij')

    sizes = [len(chunk) async for chunk in storage.read_attachment(CHAT, NAME)]

    assert sizes == [8, 8, 4]


async def test_read_attachment_range_yields_the_inclusive_bytes(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'0123456789abcdefghij')

    part = await read_all(storage.read_attachment(CHAT, NAME, ByteRange(first=3, last=12)))

    assert part == b'3456789abc'


async def test_read_attachment_range_of_one_byte(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'0123456789')

    part = await read_all(storage.read_attachment(CHAT, NAME, ByteRange(first=9, last=9)))

    assert part == b'9'


async def test_read_attachment_range_past_the_end_stops_at_the_end(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'0123456789')

    part = await read_all(storage.read_attachment(CHAT, NAME, ByteRange(first=6, last=99)))

    assert part == b'6789'


async def test_read_attachment_of_an_empty_file_yields_nothing(storage: ChatStorage) -> None:
    await storage.ensure_chat(CHAT)
    await put(storage, b'')

    assert await read_all(storage.read_attachment(CHAT, NAME)) == b''


async def test_read_attachment_of_a_missing_name_raises_stored_content_missing(
    storage: ChatStorage,
) -> None:
    await storage.ensure_chat(CHAT)

    with pytest.raises(StoredContentMissingError):
        await read_all(storage.read_attachment(CHAT, NAME))


async def test_read_attachment_does_not_follow_a_planted_symlink(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
    tmp_path: Path,
) -> None:
    secret = tmp_path / 'secret.txt'
    secret.write_bytes(b'outside the data dir')
    await file_storage.ensure_chat(CHAT)
    (chat_dir / NAME.value).symlink_to(secret)

    with pytest.raises(StoredContentMissingError):
        await read_all(file_storage.read_attachment(CHAT, NAME))


async def test_read_history_does_not_follow_a_planted_symlink(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
    tmp_path: Path,
) -> None:
    secret = tmp_path / 'secret.txt'
    secret.write_bytes(b'outside the data dir')
    await file_storage.ensure_chat(CHAT)
    (chat_dir / 'history.md').unlink()
    (chat_dir / 'history.md').symlink_to(secret)

    with pytest.raises(StoredContentMissingError):
        await read_all(file_storage.read_history(replace(CHAT, history_bytes=5)))


async def test_read_attachment_of_a_directory_raises_stored_content_missing(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    (chat_dir / NAME.value).mkdir()

    with pytest.raises(StoredContentMissingError):
        await read_all(file_storage.read_attachment(CHAT, NAME))


async def test_read_attachment_of_a_planted_fifo_raises_without_blocking(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    os.mkfifo(chat_dir / NAME.value)

    with pytest.raises(StoredContentMissingError):
        await asyncio.wait_for(read_all(file_storage.read_attachment(CHAT, NAME)), timeout=5)


async def test_append_to_a_fifo_planted_as_history_is_stored_content_missing(
    file_storage: FileSystemChatStorage,
    chat_dir: Path,
) -> None:
    await file_storage.ensure_chat(CHAT)
    chat = await write_history(file_storage, b'abc')
    (chat_dir / 'history.md').unlink()
    os.mkfifo(chat_dir / 'history.md')

    with pytest.raises(StoredContentMissingError):
        await asyncio.wait_for(
            file_storage.append_history(chat, await stage(file_storage, b'def')), timeout=5
        )


async def test_read_attachment_abandoned_midway_releases_the_file(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'0123456789abcdefghij')
    path = str(file_storage.attachment_path(CHAT, NAME))
    reader = file_storage.read_attachment(CHAT, NAME)
    await anext(reader)
    assert path in open_paths()

    await reader.aclose()

    assert path not in open_paths()


# --- operations -------------------------------------------------------------------------


async def test_is_writable_on_a_usable_data_dir(storage: ChatStorage) -> None:
    assert await storage.is_writable() is True


async def test_is_writable_leaves_no_probe_behind(file_storage: FileSystemChatStorage) -> None:
    await file_storage.is_writable()

    assert listing(file_storage.staging_dir) == []


async def test_is_not_writable_when_the_staging_area_is_unusable(
    file_storage: FileSystemChatStorage,
) -> None:
    file_storage.staging_dir.rmdir()
    file_storage.staging_dir.write_bytes(b'not a directory')

    assert await file_storage.is_writable() is False


def _record(data: bytes) -> ChatFile:
    return ChatFile(
        file_id=UUID(int=len(data)),
        chat_id=CHAT_ID,
        name=NAME,
        content_type=None,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=CREATED_AT,
    )


async def test_a_swap_not_yet_committed_is_not_read_as_the_old_record(
    file_storage: FileSystemChatStorage,
) -> None:
    """ADR 011 swaps before the metadata commits: a reader holding the old record must
    not get the new bytes under it, whatever their size."""
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'old bytes')
    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'NEW BYTES'))
    old = _record(b'old bytes')

    with pytest.raises(StoredVersionChangingError):
        await read_all(file_storage.read_attachment(CHAT, NAME, record=old))
    with pytest.raises(StoredVersionChangingError):
        await read_all(file_storage.read_attachment(CHAT, NAME, ByteRange(0, 3), record=old))
    with pytest.raises(StoredVersionChangingError):
        await file_storage.sendable_attachment(CHAT, NAME, record=old)
    new = _record(b'NEW BYTES')
    assert await read_all(file_storage.read_attachment(CHAT, NAME, record=new)) == b'NEW BYTES'

    await change.rollback()

    assert await read_all(file_storage.read_attachment(CHAT, NAME, record=old)) == b'old bytes'


async def test_a_history_put_not_yet_committed_is_not_read_as_the_old_revision(
    file_storage: FileSystemChatStorage,
) -> None:
    await file_storage.ensure_chat(CHAT)
    change = await file_storage.put_history(CHAT, await stage(file_storage, b'# first'))
    await change.commit()
    first = replace(CHAT, history_bytes=7, history_revision=1)
    appended = await file_storage.append_history(first, await stage(file_storage, b'!'))
    await appended.commit()
    second = replace(first, history_bytes=8, history_revision=2)
    assert await read_all(file_storage.read_history(second)) == b'# first!'  # appends keep it

    change = await file_storage.put_history(second, await stage(file_storage, b'# third'))

    with pytest.raises(StoredVersionChangingError):
        await read_all(file_storage.read_history(second))
    third = replace(second, history_bytes=7, history_revision=3)
    assert await read_all(file_storage.read_history(third)) == b'# third'
    await change.rollback()
    assert await read_all(file_storage.read_history(second)) == b'# first!'


async def test_a_file_the_service_did_not_write_is_read_as_before(
    file_storage: FileSystemChatStorage, chat_dir: Path
) -> None:
    """A sandbox's file carries no version mark: it is read (up to the record's size)."""
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'ours')
    planted = chat_dir / 'planted'
    planted.write_bytes(b'theirs, and longer')
    planted.replace(chat_dir / NAME.value)

    read = await read_all(file_storage.read_attachment(CHAT, NAME, record=_record(b'ours')))

    assert read == b'thei'


async def test_a_whole_read_stops_at_the_record_s_size(
    file_storage: FileSystemChatStorage, chat_dir: Path
) -> None:
    await file_storage.ensure_chat(CHAT)
    await put(file_storage, b'0123456789abcdef0123')
    with (chat_dir / NAME.value).open('ab') as grown:  # a sandbox appends in place
        grown.write(b'+tail')

    record = _record(b'0123456789abcdef0123')
    read = await read_all(file_storage.read_attachment(CHAT, NAME, record=record))

    assert read == b'0123456789abcdef0123'


@pytest.mark.parametrize('commit', [True, False], ids=['committed', 'rolled back'])
async def test_a_put_over_a_planted_directory_replaces_it(
    file_storage: FileSystemChatStorage, chat_dir: Path, *, commit: bool
) -> None:
    """No hard link can name a directory: the put moves it away whole, restorable until
    the commit, rather than a 503 for every such put, retry as one might."""
    await file_storage.ensure_chat(CHAT)
    planted = chat_dir / NAME.value
    planted.mkdir()
    (planted / 'inside').write_bytes(b'the sandbox made this')

    change = await file_storage.put_attachment(CHAT, NAME, await stage(file_storage, b'ours'))
    assert planted.read_bytes() == b'ours'
    if commit:
        await change.commit()
        assert planted.read_bytes() == b'ours'
    else:
        await change.rollback()
        assert (planted / 'inside').read_bytes() == b'the sandbox made this'
    assert list(file_storage.trash_dir.iterdir()) == []


async def test_an_append_to_a_planted_history_directory_is_stored_content_missing(
    file_storage: FileSystemChatStorage, chat_dir: Path
) -> None:
    await file_storage.ensure_chat(CHAT)
    (chat_dir / 'history.md').unlink()
    (chat_dir / 'history.md').mkdir()

    with pytest.raises(StoredContentMissingError):  # a 500, as for any planted entry
        await file_storage.append_history(CHAT, await stage(file_storage, b'more'))

"""Use cases on recording fakes: what is staged, committed, published and released, and
in which order."""

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from uuid import UUID

import pytest

from domain.chat import HISTORY_FILE_NAME, Chat, ChatAttachmentName, ChatFile, HistorySegment
from domain.content import ByteRange
from domain.error import (
    ChatNotFoundError,
    CommitOutcomeUnknownError,
    FileTooLargeError,
    HistoryPreconditionFailedError,
    InvalidHistoryEncodingError,
    ServiceUnavailableError,
    StoredContentMissingError,
    WorkspaceQuotaExceededError,
)
from usecase.append_history import COMPACT_EVERY, AppendHistory
from usecase.create_chat import CreateChat
from usecase.delete_attachment import ClearAttachments, DeleteAttachment
from usecase.delete_chat import DeleteChat
from usecase.delete_workspace import DeleteWorkspace
from usecase.ensure_workspace import EnsureWorkspace
from usecase.export_chat import ExportChat, ExportedContentChangedError
from usecase.get_attachment import ReadAttachment
from usecase.list_chats import ListChats
from usecase.publish import MAX_ROUNDS, Publisher
from usecase.read_history import ReadHistory
from usecase.upload_attachment import UploadAttachment
from usecase.write_history import WriteHistory

from .fakes import (
    FixedClock,
    RecordingBackend,
    RecordingBlobStore,
    RecordingViews,
    SequentialIds,
    blob_id,
    body,
)

USER = UUID('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa')
OTHER_USER = UUID('bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb')
QUOTA = 100_000
MAX_FILE = 80_000
# more than an append keeps in its row
LARGE = 70_000


class World:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.backend = RecordingBackend(self.log)
        self.blobs = RecordingBlobStore(self.log)
        self.views = RecordingViews(self.log, self.blobs)
        self.clock = FixedClock()
        self.ids = SequentialIds()
        uow = self.backend.unit_of_work
        self.publisher = Publisher(uow, self.blobs, self.views)
        self.ensure_workspace = EnsureWorkspace(uow, self.clock, self.ids, QUOTA)
        self.create_chat = CreateChat(uow, self.views, self.clock, self.ids)
        self.list_chats = ListChats(uow)
        self.upload = UploadAttachment(uow, self.blobs, self.publisher, self.clock, MAX_FILE)
        self.write_history = WriteHistory(uow, self.blobs, self.publisher, self.clock, MAX_FILE)
        self.append_history = AppendHistory(uow, self.blobs, self.publisher, self.clock, MAX_FILE)
        self.read_history = ReadHistory(uow, self.blobs)
        self.read_attachment = ReadAttachment(uow, self.blobs)
        self.export_chat = ExportChat(uow, self.blobs)
        self.delete_attachment = DeleteAttachment(uow, self.blobs, self.publisher, self.clock)
        self.clear_attachments = ClearAttachments(uow, self.blobs, self.publisher, self.clock)
        self.delete_chat = DeleteChat(uow, self.blobs, self.views, self.clock)
        self.delete_workspace = DeleteWorkspace(uow, self.blobs, self.views, self.clock)

    async def used_bytes(self) -> int:
        async with self.backend.unit_of_work(write=False) as uow:
            workspace = await uow.workspaces.get_by_user_id(USER)
        assert workspace is not None
        return workspace.used_bytes

    async def chat(self, chat_id: UUID) -> Chat | None:
        async with self.backend.unit_of_work(write=False) as uow:
            return await uow.chats.get(chat_id)

    async def files(self, chat_id: UUID) -> list[ChatFile]:
        async with self.backend.unit_of_work(write=False) as uow:
            return await uow.chat_files.list_by_chat_id(chat_id)

    async def segments(self, chat_id: UUID) -> list[HistorySegment]:
        async with self.backend.unit_of_work(write=False) as uow:
            return await uow.history_segments.list_by_chat_id(chat_id)

    async def put_row(self, chat: Chat, name: str, content: bytes) -> UUID:
        """Stage `content` and commit a row naming it at `name`, as another writer would."""
        staged = await self.blobs.stage(body(content), limit_bytes=MAX_FILE)
        assert staged.blob_id is not None
        async with self.backend.unit_of_work() as uow:
            await uow.chat_files.save(
                ChatFile(
                    file_id=staged.blob_id,
                    chat_id=chat.chat_id,
                    name=ChatAttachmentName(name),
                    content_type=None,
                    size_bytes=staged.size_bytes,
                    created_at=self.clock.now(),
                    sha256=staged.sha256,
                )
            )
            await uow.commit()
        return staged.blob_id

    def shown(self, chat: Chat) -> dict[str, UUID | bytes]:
        return self.views.dirs[chat.workspace_id, chat.chat_id]


async def joined(chunks: AsyncIterator[bytes]) -> bytes:
    return b''.join([chunk async for chunk in chunks])


@pytest.fixture
async def world() -> World:
    world = World()
    await world.ensure_workspace(USER)
    return world


@pytest.fixture
async def chat(world: World) -> Chat:
    """A chat of USER; the log starts after it."""
    created = await world.create_chat(USER, 'title')
    world.log.clear()
    return created


# workspaces and chats


async def test_ensure_workspace_is_idempotent(world: World) -> None:
    again = await world.ensure_workspace(USER)
    assert again.created is False
    assert again.workspace.quota_bytes == QUOTA


async def test_create_chat_makes_its_directory_before_the_commit(world: World) -> None:
    world.log.clear()
    chat = await world.create_chat(USER, 'title')
    assert world.log == ['ensure_chat', 'begin', 'commit']
    assert world.shown(chat) == {HISTORY_FILE_NAME: b''}
    assert await world.chat(chat.chat_id) == chat


async def test_create_chat_removes_its_directory_when_the_commit_fails(world: World) -> None:
    world.log.clear()
    world.backend.commit_failure = ServiceUnavailableError()
    with pytest.raises(ServiceUnavailableError):
        await world.create_chat(USER, 'title')
    assert world.log == ['ensure_chat', 'begin', 'commit failed', 'remove_chat']
    assert world.views.dirs == {}


async def test_create_chat_keeps_its_directory_when_the_commit_outcome_is_unknown(
    world: World,
) -> None:
    world.log.clear()
    world.backend.commit_failure = CommitOutcomeUnknownError()
    with pytest.raises(CommitOutcomeUnknownError):
        await world.create_chat(USER, 'title')
    assert world.log == ['ensure_chat', 'begin', 'commit failed']
    assert len(world.views.dirs) == 1


async def test_list_chats_pages_with_a_next_key(world: World) -> None:
    chats = [await world.create_chat(USER, str(i)) for i in range(3)]
    first = await world.list_chats(USER, 2, None)
    assert [c.chat_id for c in first.items] == [c.chat_id for c in chats[:2]]
    assert first.next_key is not None
    second = await world.list_chats(USER, 2, first.next_key)
    assert [c.chat_id for c in second.items] == [chats[2].chat_id]
    assert second.next_key is None


# uploads


async def test_upload_stages_its_blob_before_the_transaction(world: World, chat: Chat) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', 'text/plain', body(b'12345'))
    assert world.log[:3] == ['stage b1', 'begin', 'commit']


async def test_upload_commits_a_row_naming_the_staged_blob(world: World, chat: Chat) -> None:
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', 'text/plain', body(b'12345'))
    assert uploaded.replaced is False
    [row] = await world.files(chat.chat_id)
    assert row == uploaded.chat_file
    assert row.file_id == blob_id(1)
    assert world.blobs.blobs[row.file_id] == b'12345'
    assert (row.size_bytes, row.content_type) == (5, 'text/plain')
    assert await world.used_bytes() == 5
    updated = await world.chat(chat.chat_id)
    assert updated is not None
    assert updated.file_count == 1


async def test_upload_publishes_the_name_after_the_commit(world: World, chat: Chat) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'12345'))
    assert world.log == [
        'stage b1',
        'begin',
        'commit',
        'show_file a.txt b1',
        'release',
    ]
    assert world.shown(chat)['a.txt'] == blob_id(1)


async def test_replacing_upload_releases_the_old_blob_once_the_new_one_is_shown(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'old'))
    world.log.clear()
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'newer'))
    assert uploaded.replaced is True
    assert world.log[-2:] == ['show_file a.txt b2', 'release b1']
    assert world.blobs.released == {blob_id(1)}
    assert [f.file_id for f in await world.files(chat.chat_id)] == [blob_id(2)]
    assert await world.used_bytes() == 5


async def test_replacing_upload_gets_credit_for_the_file_it_replaces(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 50_000))
    await world.upload(USER, chat.chat_id, 'b', None, body(b'x' * 40_000))
    uploaded = await world.upload(USER, chat.chat_id, 'a', None, body(b'z' * 60_000))
    assert uploaded.replaced is True
    assert await world.used_bytes() == QUOTA


async def test_upload_refused_by_the_quota_at_commit_discards_its_blob(
    world: World, chat: Chat
) -> None:
    async def another_upload() -> None:
        await world.upload(USER, chat.chat_id, 'b', None, body(b'y' * 60_000))

    # the quota is looked up first, then another upload takes most of it
    world.blobs.before_stage = another_upload
    with pytest.raises(WorkspaceQuotaExceededError):
        await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 50_000))
    assert world.log[-3:] == ['stage b2', 'begin', 'discard b2']
    assert blob_id(2) not in world.blobs.blobs
    assert await world.used_bytes() == 60_000
    assert [f.name.value for f in await world.files(chat.chat_id)] == ['b']


async def test_upload_over_the_remaining_quota_is_refused_while_it_streams(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 50_000))
    world.log.clear()
    with pytest.raises(WorkspaceQuotaExceededError):
        await world.upload(USER, chat.chat_id, 'b', None, body(b'y' * 50_001))
    assert world.log == ['stage refused']
    assert await world.used_bytes() == 50_000


async def test_upload_over_the_size_limit_is_refused_while_it_streams(
    world: World, chat: Chat
) -> None:
    with pytest.raises(FileTooLargeError):
        await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 40_000, b'x' * 40_000, b'x'))
    assert world.blobs.chunks_read == 3  # refused as soon as the limit was crossed
    assert world.log == ['stage refused']
    assert await world.used_bytes() == 0


async def test_upload_declared_over_the_size_limit_is_refused_unread(
    world: World, chat: Chat
) -> None:
    with pytest.raises(FileTooLargeError):
        await world.upload(USER, chat.chat_id, 'a', None, body(b'x'), declared_size=MAX_FILE + 1)
    assert world.blobs.chunks_read == 0
    assert world.log == []


async def test_upload_whose_commit_fails_discards_its_blob(world: World, chat: Chat) -> None:
    world.backend.commit_failure = ServiceUnavailableError()
    with pytest.raises(ServiceUnavailableError):
        await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'12345'))
    assert world.log == ['stage b1', 'begin', 'commit failed', 'discard b1']
    world.backend.commit_failure = None
    assert await world.files(chat.chat_id) == []
    assert await world.used_bytes() == 0
    assert 'a.txt' not in world.shown(chat)


async def test_upload_whose_commit_outcome_is_unknown_keeps_its_blob(
    world: World, chat: Chat
) -> None:
    world.backend.commit_failure = CommitOutcomeUnknownError()
    with pytest.raises(CommitOutcomeUnknownError):
        await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'12345'))
    # the row may have committed: garbage collection decides, by the rows
    assert world.log == ['stage b1', 'begin', 'commit failed']
    assert world.blobs.blobs[blob_id(1)] == b'12345'


async def test_upload_to_another_users_chat_stages_nothing(world: World, chat: Chat) -> None:
    await world.ensure_workspace(OTHER_USER)
    world.log.clear()
    with pytest.raises(ChatNotFoundError):
        await world.upload(OTHER_USER, chat.chat_id, 'a', None, body(b'x'))
    assert world.log == []


async def test_upload_answers_although_its_publication_fails(
    world: World, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    world.views.failing = 'show_file'
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'x'))
    assert uploaded.chat_file.file_id == blob_id(1)
    assert [f.file_id for f in await world.files(chat.chat_id)] == [blob_id(1)]
    assert 'publication of a file failed' in caplog.text


# history


async def test_history_put_makes_the_staged_blob_the_base(world: World, chat: Chat) -> None:
    written = await world.write_history(USER, chat.chat_id, body(b'# hello\n'))
    assert world.log[:3] == ['stage b1', 'begin', 'commit']
    stored = await world.chat(chat.chat_id)
    assert stored == written
    assert stored.history_blob_id == blob_id(1)
    assert (stored.history_bytes, stored.history_revision) == (8, 1)
    assert await world.segments(chat.chat_id) == []
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'# hello\n'
    assert await world.used_bytes() == 8


async def test_history_put_releases_the_old_base_and_segments_after_the_commit(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base'))
    await world.append_history(USER, chat.chat_id, body(b'small'))
    await world.append_history(USER, chat.chat_id, body(b'x' * LARGE))
    world.log.clear()
    await world.write_history(USER, chat.chat_id, body(b'new'))
    assert world.log[:4] == ['stage b3', 'begin', 'commit', 'release b1 b2']
    assert await world.segments(chat.chat_id) == []
    stored = await world.chat(chat.chat_id)
    assert stored is not None
    assert stored.history_blob_id == blob_id(3)
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'new'
    assert await world.used_bytes() == 3


async def test_history_put_at_a_stale_version_is_refused_before_reading(
    world: World, chat: Chat
) -> None:
    with pytest.raises(HistoryPreconditionFailedError):
        await world.write_history(USER, chat.chat_id, body(b'x'), if_match={'nope'})
    assert world.blobs.chunks_read == 0
    assert world.log == []


async def test_history_put_of_invalid_utf8_commits_nothing(world: World, chat: Chat) -> None:
    with pytest.raises(InvalidHistoryEncodingError):
        await world.write_history(USER, chat.chat_id, body(b'ok', b'\xff'))
    assert 'begin' not in world.log
    assert await world.chat(chat.chat_id) == chat


async def test_small_append_adds_a_segment_held_in_its_row(world: World, chat: Chat) -> None:
    appended = await world.append_history(USER, chat.chat_id, body(b'hello\n'))
    assert world.log[:3] == ['stage inline', 'begin', 'commit']
    assert await world.segments(chat.chat_id) == [
        HistorySegment(chat_id=chat.chat_id, revision=1, size_bytes=6, content=b'hello\n')
    ]
    assert (appended.history_bytes, appended.history_revision) == (6, 1)
    assert appended.history_blob_id is None
    assert await world.used_bytes() == 6


async def test_large_append_adds_a_segment_naming_a_blob(world: World, chat: Chat) -> None:
    await world.append_history(USER, chat.chat_id, body(b'x' * LARGE))
    assert world.log[:3] == ['stage b1', 'begin', 'commit']
    assert await world.segments(chat.chat_id) == [
        HistorySegment(chat_id=chat.chat_id, revision=1, size_bytes=LARGE, blob_id=blob_id(1))
    ]


async def test_append_publishes_the_whole_history_when_the_view_is_not_just_before_it(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base\n'))
    world.views.dirs[chat.workspace_id, chat.chat_id][HISTORY_FILE_NAME] = b'sandboxed'
    world.log.clear()
    await world.append_history(USER, chat.chat_id, body(b'more\n'))
    assert [entry for entry in world.log if 'history' in entry] == ['show_history']
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'base\nmore\n'


async def test_small_append_extends_the_history_shown_with_its_bytes(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base\n'))
    world.log.clear()
    await world.append_history(USER, chat.chat_id, body(b'more\n'))
    assert world.log == [
        'stage inline',
        'begin',
        'commit',
        'release',
        'extend_history',
    ]
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'base\nmore\n'


async def test_append_whose_commit_fails_discards_what_it_staged(world: World, chat: Chat) -> None:
    world.backend.commit_failure = ServiceUnavailableError()
    with pytest.raises(ServiceUnavailableError):
        await world.append_history(USER, chat.chat_id, body(b'x' * LARGE))
    assert world.log == ['stage b1', 'begin', 'commit failed', 'discard b1']
    assert await world.segments(chat.chat_id) == []


async def test_small_declared_append_is_read_first_and_checked_under_the_lock(
    world: World, chat: Chat
) -> None:
    await world.ensure_workspace(OTHER_USER)
    await world.append_history(USER, chat.chat_id, body(b'x' * 50), declared_size=50)
    world.log.clear()
    # refused under the lock, after the body was read: what was staged is discarded
    with pytest.raises(ChatNotFoundError):
        await world.append_history(OTHER_USER, chat.chat_id, body(b'a'), declared_size=1)
    with pytest.raises(HistoryPreconditionFailedError):
        await world.append_history(
            USER, chat.chat_id, body(b'b'), declared_size=1, if_match={'nope'}
        )
    assert world.log == ['stage inline', 'begin', 'discard inline'] * 2
    assert await world.used_bytes() == 50


async def test_append_of_unknown_or_larger_size_is_checked_before_it_is_read(
    world: World, chat: Chat
) -> None:
    await world.ensure_workspace(OTHER_USER)
    world.log.clear()
    with pytest.raises(ChatNotFoundError):
        await world.append_history(OTHER_USER, chat.chat_id, body(b'a'))
    with pytest.raises(HistoryPreconditionFailedError):
        await world.append_history(
            USER, chat.chat_id, body(b'b'), declared_size=20_000, if_match={'nope'}
        )
    assert world.blobs.chunks_read == 0
    assert world.log == []


async def fill_to_compaction(world: World, chat: Chat) -> bytes:
    """A base and appends up to one revision short of a compaction; the history so far."""
    await world.write_history(USER, chat.chat_id, body(b'base\n'))
    history = b'base\n'
    for number in range(2, COMPACT_EVERY - 1):
        line = f'{number}\n'.encode()
        await world.append_history(USER, chat.chat_id, body(line))
        history += line
    await world.append_history(USER, chat.chat_id, body(b'L' * LARGE))
    return history + b'L' * LARGE


async def test_append_of_every_compact_every_th_revision_folds_the_history_into_a_new_base(
    world: World, chat: Chat
) -> None:
    history = await fill_to_compaction(world, chat)
    world.log.clear()
    appended = await world.append_history(USER, chat.chat_id, body(b'last\n'))
    assert appended.history_revision == COMPACT_EVERY
    compacted = await world.chat(chat.chat_id)
    assert compacted is not None
    assert compacted.history_blob_id == blob_id(3)
    assert world.blobs.blobs[blob_id(3)] == history + b'last\n'
    assert await world.segments(chat.chat_id) == []
    assert compacted.history_bytes == len(history) + 5
    # the old base and the one segment in a blob
    assert world.log[-4:] == ['stage b3', 'begin', 'commit', 'release b1 b2']


async def test_compaction_keeps_the_history_its_readers_see(world: World, chat: Chat) -> None:
    history = await fill_to_compaction(world, chat)
    await world.append_history(USER, chat.chat_id, body(b'last\n'))
    content = await world.read_history(USER, chat.chat_id)
    assert await joined(content.chunks) == history + b'last\n'
    assert world.shown(chat)[HISTORY_FILE_NAME] == history + b'last\n'


async def test_compaction_is_skipped_when_a_put_replaced_the_history_meanwhile(
    world: World, chat: Chat
) -> None:
    await fill_to_compaction(world, chat)

    async def put() -> None:
        await world.write_history(USER, chat.chat_id, body(b'replaced'))

    async def put_while_compacting() -> None:
        world.views.after_change = None
        world.blobs.before_stage = put

    # the append's publication runs first; the compaction stages next
    world.views.after_change = put_while_compacting
    await world.append_history(USER, chat.chat_id, body(b'last\n'))
    # b3 the put's base, b4 the compaction's fold of the history before it
    assert world.log[-2:] == ['begin', 'discard b4']
    stored = await world.chat(chat.chat_id)
    assert stored is not None
    assert stored.history_blob_id == blob_id(3)
    assert await world.segments(chat.chat_id) == []
    assert world.blobs.released == {blob_id(1), blob_id(2)}


async def test_compaction_keeps_a_segment_appended_meanwhile(world: World, chat: Chat) -> None:
    history = await fill_to_compaction(world, chat)

    async def append() -> None:
        await world.append_history(USER, chat.chat_id, body(b'later\n'))

    async def append_while_compacting() -> None:
        world.views.after_change = None
        world.blobs.before_stage = append

    world.views.after_change = append_while_compacting
    await world.append_history(USER, chat.chat_id, body(b'last\n'))
    compacted = await world.chat(chat.chat_id)
    assert compacted is not None
    assert compacted.history_blob_id == blob_id(3)
    assert world.blobs.blobs[blob_id(3)] == history + b'last\n'
    assert [s.revision for s in await world.segments(chat.chat_id)] == [COMPACT_EVERY + 1]
    content = await world.read_history(USER, chat.chat_id)
    assert await joined(content.chunks) == history + b'last\nlater\n'


async def test_compaction_that_fails_leaves_the_append_committed(
    world: World, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    await fill_to_compaction(world, chat)

    async def fail_commits() -> None:
        world.views.after_change = None
        world.backend.commit_failure = ServiceUnavailableError()

    world.views.after_change = fail_commits
    appended = await world.append_history(USER, chat.chat_id, body(b'last\n'))
    assert world.log[-3:] == ['begin', 'commit failed', 'discard b3']
    assert len(await world.segments(chat.chat_id)) == COMPACT_EVERY - 1
    assert await world.chat(chat.chat_id) == appended
    assert 'compaction of a history failed' in caplog.text


async def test_read_history_streams_the_base_then_the_segments_in_order(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base\n'))
    await world.append_history(USER, chat.chat_id, body(b'one\n'))
    await world.append_history(USER, chat.chat_id, body(b'L' * LARGE))
    await world.append_history(USER, chat.chat_id, body(b'three\n'))
    content = await world.read_history(USER, chat.chat_id)
    assert [chunk async for chunk in content.chunks] == [
        b'base\n',
        b'one\n',
        b'L' * LARGE,
        b'three\n',
    ]
    assert content.chat.history_revision == 4


async def test_read_history_of_a_missing_blob_fails_before_the_first_byte(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base\n'))
    del world.blobs.blobs[blob_id(1)]
    with pytest.raises(StoredContentMissingError):
        await world.read_history(USER, chat.chat_id)


# reads of attachments and exports


async def test_read_attachment_streams_the_blob_its_row_names(world: World, chat: Chat) -> None:
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'0123456789'))
    content = await world.read_attachment(USER, chat.chat_id, uploaded.chat_file.file_id)
    assert await joined(content.open(ByteRange(2, 4))) == b'234'
    assert await content.path() == f'/blobs/{blob_id(1)}'


async def test_export_lists_the_history_then_the_files(world: World, chat: Chat) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base\n'))
    await world.append_history(USER, chat.chat_id, body(b'more\n'))
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'aaa'))
    export = await world.export_chat(USER, chat.chat_id)
    entries = [(entry.name, await joined(entry.chunks)) async for entry in export.entries()]
    assert entries == [(HISTORY_FILE_NAME, b'base\nmore\n'), ('a.txt', b'aaa')]


async def test_export_of_a_file_collected_since_its_listing_is_changed(
    world: World, chat: Chat
) -> None:
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'aaa'))
    export = await world.export_chat(USER, chat.chat_id)
    del world.blobs.blobs[uploaded.chat_file.file_id]
    entries = [entry async for entry in export.entries()]
    with pytest.raises(ExportedContentChangedError):
        await joined(entries[1].chunks)


# deletes


async def test_delete_attachment_commits_then_hides_the_name_and_releases_its_blob(
    world: World, chat: Chat
) -> None:
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'12345'))
    world.log.clear()
    await world.delete_attachment(USER, chat.chat_id, uploaded.chat_file.file_id)
    assert world.log == ['begin', 'commit', 'hide_file a.txt', 'release b1']
    assert await world.files(chat.chat_id) == []
    assert await world.used_bytes() == 0
    assert 'a.txt' not in world.shown(chat)
    stored = await world.chat(chat.chat_id)
    assert stored is not None
    assert stored.file_count == 0


async def test_clear_attachments_commits_then_hides_every_name_and_releases_the_blobs(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'kept'))
    await world.upload(USER, chat.chat_id, 'a', None, body(b'1'))
    await world.upload(USER, chat.chat_id, 'b', None, body(b'22'))
    world.log.clear()
    await world.clear_attachments(USER, chat.chat_id)
    assert world.log == ['begin', 'commit', 'hide_file a', 'hide_file b', 'release b2 b3']
    assert await world.files(chat.chat_id) == []
    assert world.shown(chat) == {HISTORY_FILE_NAME: b'kept'}
    assert await world.used_bytes() == 4


async def test_delete_chat_commits_then_removes_the_directory_and_releases_every_blob(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'base'))
    await world.append_history(USER, chat.chat_id, body(b'x' * LARGE))
    await world.append_history(USER, chat.chat_id, body(b'inline'))
    await world.upload(USER, chat.chat_id, 'a', None, body(b'1'))
    world.log.clear()
    await world.delete_chat(USER, chat.chat_id)
    assert world.log == ['begin', 'commit', 'remove_chat', 'release b1 b2 b3']
    assert await world.chat(chat.chat_id) is None
    assert await world.files(chat.chat_id) == []
    assert await world.segments(chat.chat_id) == []
    assert world.views.dirs == {}
    assert await world.used_bytes() == 0


async def test_delete_chat_whose_commit_fails_keeps_its_directory_and_blobs(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a', None, body(b'1'))
    world.log.clear()
    world.backend.commit_failure = ServiceUnavailableError()
    with pytest.raises(ServiceUnavailableError):
        await world.delete_chat(USER, chat.chat_id)
    assert world.log == ['begin', 'commit failed']
    assert world.blobs.released == set()
    world.backend.commit_failure = None
    assert await world.chat(chat.chat_id) is not None
    assert 'a' in world.shown(chat)


async def test_delete_workspace_commits_then_removes_its_directory_and_releases_every_blob(
    world: World, chat: Chat
) -> None:
    other = await world.create_chat(USER, 'other')
    await world.write_history(USER, chat.chat_id, body(b'base'))
    await world.upload(USER, other.chat_id, 'a', None, body(b'1'))
    world.log.clear()
    await world.delete_workspace(USER)
    assert world.log == ['begin', 'commit', 'remove_workspace', 'release b1 b2']
    assert await world.chat(chat.chat_id) is None
    assert await world.chat(other.chat_id) is None
    assert world.views.dirs == {}
    async with world.backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get_by_user_id(USER) is None


# publication


async def test_publisher_shows_the_file_the_row_names_now(world: World, chat: Chat) -> None:
    first = await world.put_row(chat, 'a.txt', b'first')

    async def another_write() -> None:
        world.views.after_change = None
        await world.put_row(chat, 'a.txt', b'second')

    # a write commits a new file at the name while the first is being shown
    world.views.after_change = another_write
    await world.publisher.file(chat.workspace_id, chat.chat_id, ChatAttachmentName('a.txt'))
    assert [e for e in world.log if e.startswith('show_file')] == [
        'show_file a.txt b1',
        'show_file a.txt b2',
    ]
    assert first == blob_id(1)
    assert world.shown(chat)['a.txt'] == blob_id(2)


async def test_publisher_hides_a_name_whose_row_is_gone(world: World, chat: Chat) -> None:
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    async with world.backend.unit_of_work() as uow:
        await uow.chat_files.delete(uploaded.chat_file.file_id)
        await uow.commit()
    world.log.clear()
    await world.publisher.file(chat.workspace_id, chat.chat_id, ChatAttachmentName('a.txt'))
    assert world.log == ['hide_file a.txt']
    assert 'a.txt' not in world.shown(chat)


async def test_publisher_gives_up_with_a_warning_when_the_row_keeps_changing(
    world: World, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    await world.put_row(chat, 'a.txt', b'0')

    async def another_write() -> None:
        await world.put_row(chat, 'a.txt', b'again')

    world.views.after_change = another_write
    with caplog.at_level(logging.WARNING, logger='chat_storage.views'):
        await world.publisher.file(chat.workspace_id, chat.chat_id, ChatAttachmentName('a.txt'))
    assert len([e for e in world.log if e.startswith('show_file')]) == MAX_ROUNDS
    assert 'did not settle' in caplog.text


async def test_publisher_logs_and_swallows_a_view_failure(
    world: World, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    await world.put_row(chat, 'a.txt', b'1')
    world.views.failing = 'show_file'
    await world.publisher.file(chat.workspace_id, chat.chat_id, ChatAttachmentName('a.txt'))
    assert world.log[-1] == 'show_file a.txt b1 failed'
    assert 'publication of a file failed' in caplog.text
    assert caplog.records[-1].exc_info is not None


async def commit_second_append(world: World, chat: Chat) -> None:
    async with world.backend.unit_of_work() as uow:
        current = await uow.chats.get(chat.chat_id)
        assert current is not None
        await uow.history_segments.add(HistorySegment(chat.chat_id, 2, 4, content=b'two\n'))
        await uow.chats.save(replace(current, history_bytes=8, history_revision=2))
        await uow.commit()


async def test_publisher_history_leaves_a_later_revision_to_its_writer(
    world: World, chat: Chat
) -> None:
    await world.append_history(USER, chat.chat_id, body(b'one\n'))
    async with world.backend.unit_of_work(write=False) as uow:
        first = await uow.chats.get(chat.chat_id)
    assert first is not None
    await commit_second_append(world, chat)

    world.log.clear()
    await world.publisher.history(chat.workspace_id, first)

    # nothing written: the write of revision 2 publishes it
    assert world.log == []
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'one\n'


async def history_at_revision_2(world: World, chat: Chat) -> Chat:
    """A history of `one\\n` (an empty base and one segment) at revision 2, shown empty."""
    await world.write_history(USER, chat.chat_id, body(b''))
    async with world.backend.unit_of_work() as uow:
        current = await uow.chats.get(chat.chat_id)
        assert current is not None
        await uow.history_segments.add(HistorySegment(chat.chat_id, 2, 4, content=b'one\n'))
        first = replace(current, history_bytes=4, history_revision=2)
        await uow.chats.save(first)
        await uow.commit()
    return first


async def test_publisher_history_leaves_a_later_append_on_the_same_base_to_its_writer(
    world: World, chat: Chat
) -> None:
    first = await history_at_revision_2(world, chat)

    async def another_append() -> None:
        world.views.after_change = None
        async with world.backend.unit_of_work() as uow:
            found = await uow.chats.get(chat.chat_id)
            assert found is not None
            await uow.history_segments.add(HistorySegment(chat.chat_id, 3, 4, content=b'two\n'))
            await uow.chats.save(replace(found, history_bytes=8, history_revision=3))
            await uow.commit()

    world.log.clear()
    world.views.after_change = another_append
    await world.publisher.history(chat.workspace_id, first, b'one\n')

    # its bytes are where they belong; the write of revision 3 shows its own
    assert [entry for entry in world.log if 'history' in entry] == ['extend_history']
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'one\n'


async def test_publisher_history_that_wrote_before_a_put_goes_on_until_the_rows_stay(
    world: World, chat: Chat
) -> None:
    first = await history_at_revision_2(world, chat)

    async def a_put() -> None:
        world.views.after_change = None
        base = world.blobs.put(b'put\n')
        async with world.backend.unit_of_work() as uow:
            found = await uow.chats.get(chat.chat_id)
            assert found is not None
            await uow.history_segments.delete_by_chat_id(chat.chat_id)
            put = replace(found, history_blob_id=base, history_bytes=4, history_revision=3)
            await uow.chats.save(put)
            await uow.commit()

    world.log.clear()
    world.views.after_change = a_put
    await world.publisher.history(chat.workspace_id, first, b'one\n')

    # what it extended may have been the put's file: it shows the put's history anew
    assert [entry for entry in world.log if 'history' in entry] == [
        'extend_history',
        'show_history',
    ]
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'put\n'


async def test_publisher_chat_removes_names_the_rows_do_not_have(world: World, chat: Chat) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    world.shown(chat)['stray.txt'] = blob_id(1)
    world.log.clear()
    changed = await world.publisher.chat(chat.workspace_id, chat.chat_id)
    assert changed is True
    assert world.log == ['hide_file stray.txt']
    assert world.shown(chat) == {HISTORY_FILE_NAME: b'', 'a.txt': blob_id(1)}


async def test_publisher_chat_follows_rows_that_change_between_rounds(
    world: World, chat: Chat
) -> None:
    world.shown(chat)['stray.txt'] = blob_id(1)
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))

    async def another_upload() -> None:
        world.views.after_change = None
        added = await world.put_row(chat, 'b.txt', b'2')
        async with world.backend.unit_of_work() as uow:
            current = await uow.chats.get(chat.chat_id)
            assert current is not None
            await uow.chats.save(replace(current, file_count=2, updated_at=world.clock.now()))
            await uow.commit()
        assert added == blob_id(2)

    world.log.clear()
    world.views.after_change = another_upload
    assert await world.publisher.chat(chat.workspace_id, chat.chat_id) is True
    assert [e for e in world.log if e.startswith(('show', 'hide'))] == [
        'hide_file stray.txt',
        'show_file b.txt b2',
    ]
    assert world.shown(chat) == {
        HISTORY_FILE_NAME: b'',
        'a.txt': blob_id(1),
        'b.txt': blob_id(2),
    }


async def test_publisher_chat_removes_the_directory_of_a_chat_without_a_row(
    world: World, chat: Chat
) -> None:
    orphan = UUID('cccccccc-cccc-cccc-cccc-cccccccccccc')
    await world.views.ensure_chat(chat.workspace_id, orphan)
    world.log.clear()
    changed = await world.publisher.chat(chat.workspace_id, orphan)
    assert changed is True
    assert world.log == ['remove_chat']
    assert list(world.views.dirs) == [(chat.workspace_id, chat.chat_id)]


async def test_publisher_chat_of_a_directory_in_step_changes_nothing(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    await world.append_history(USER, chat.chat_id, body(b'hi'))
    world.log.clear()
    assert await world.publisher.chat(chat.workspace_id, chat.chat_id) is False
    assert world.log == []


async def test_publisher_chat_rebuilds_a_missing_directory(world: World, chat: Chat) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    await world.append_history(USER, chat.chat_id, body(b'hi'))
    del world.views.dirs[chat.workspace_id, chat.chat_id]
    world.log.clear()
    assert await world.publisher.chat(chat.workspace_id, chat.chat_id) is True
    assert world.shown(chat) == {HISTORY_FILE_NAME: b'hi', 'a.txt': blob_id(1)}


# what follows a commit never undoes its answer


async def test_upload_answers_although_the_replaced_blob_cannot_be_released(
    world: World, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'old'))
    world.blobs.release_failure = ServiceUnavailableError()
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'new'))
    assert uploaded.replaced is True
    assert world.log[-2:] == ['show_file a.txt b2', 'release b1 failed']
    assert 'after a commit failed' in caplog.text


async def test_history_put_publishes_although_the_old_base_cannot_be_released(
    world: World, chat: Chat
) -> None:
    await world.write_history(USER, chat.chat_id, body(b'old'))
    world.blobs.release_failure = ServiceUnavailableError()
    written = await world.write_history(USER, chat.chat_id, body(b'new'))
    assert written.history_blob_id == blob_id(2)
    assert world.shown(chat)[HISTORY_FILE_NAME] == b'new'


async def test_delete_attachment_answers_although_its_blob_cannot_be_released(
    world: World, chat: Chat
) -> None:
    uploaded = await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    world.blobs.release_failure = ServiceUnavailableError()
    await world.delete_attachment(USER, chat.chat_id, uploaded.chat_file.file_id)
    assert world.log[-1] == 'release b1 failed'
    assert await world.files(chat.chat_id) == []


async def test_clear_attachments_answers_although_the_blobs_cannot_be_released(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    world.blobs.release_failure = ServiceUnavailableError()
    await world.clear_attachments(USER, chat.chat_id)
    assert world.log[-1] == 'release b1 failed'
    assert await world.files(chat.chat_id) == []


async def test_delete_chat_answers_although_its_directory_cannot_be_removed(
    world: World, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    world.log.clear()
    world.views.failing = 'remove_chat'
    await world.delete_chat(USER, chat.chat_id)
    # the blobs are released all the same: the sweep removes the directory
    assert world.log == ['begin', 'commit', 'remove_chat failed', 'release b1']
    assert await world.chat(chat.chat_id) is None
    assert 'after a commit failed' in caplog.text


async def test_delete_workspace_answers_although_its_directory_cannot_be_removed(
    world: World, chat: Chat
) -> None:
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'1'))
    world.log.clear()
    world.views.failing = 'remove_workspace'
    world.blobs.release_failure = ServiceUnavailableError()
    await world.delete_workspace(USER)
    assert world.log == ['begin', 'commit', 'remove_workspace failed', 'release b1 failed']
    assert await world.chat(chat.chat_id) is None

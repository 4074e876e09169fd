from uuid import UUID

import pytest

from domain.error import (
    ChatNotFoundError,
    FileTooLargeError,
    HistoryPreconditionFailedError,
    ServiceUnavailableError,
    WorkspaceQuotaExceededError,
)
from usecase.append_history import AppendHistory
from usecase.create_chat import CreateChat
from usecase.ensure_workspace import EnsureWorkspace
from usecase.list_chats import ListChats
from usecase.upload_attachment import UploadAttachment
from usecase.write_history import WriteHistory

from .fakes import FailingCommitBackend, FixedClock, RecordingStorage, SequentialIds, body

USER = UUID('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa')
OTHER_USER = UUID('bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb')
QUOTA = 100
MAX_FILE = 60


class World:
    def __init__(self) -> None:
        self.backend = FailingCommitBackend()
        self.storage = RecordingStorage()
        self.clock = FixedClock()
        self.ids = SequentialIds()
        uow = self.backend.unit_of_work
        self.ensure_workspace = EnsureWorkspace(uow, self.clock, self.ids, QUOTA)
        self.create_chat = CreateChat(uow, self.storage, self.clock, self.ids)
        self.list_chats = ListChats(uow)
        self.upload = UploadAttachment(uow, self.storage, self.clock, self.ids, MAX_FILE)
        self.write_history = WriteHistory(uow, self.storage, self.clock, MAX_FILE)
        self.append_history = AppendHistory(uow, self.storage, self.clock, MAX_FILE)

    async def used_bytes(self) -> int:
        async with self.backend.unit_of_work(write=False) as uow:
            workspace = await uow.workspaces.get_by_user_id(USER)
        assert workspace is not None
        return workspace.used_bytes


@pytest.fixture
async def world() -> World:
    world = World()
    await world.ensure_workspace(USER)
    return world


async def test_ensure_workspace_is_idempotent(world: World) -> None:
    again = await world.ensure_workspace(USER)
    assert again.created is False
    assert again.workspace.quota_bytes == QUOTA


async def test_create_chat_makes_its_directory_first_and_syncs_it_with_the_commit(
    world: World,
) -> None:
    chat = await world.create_chat(USER, 'title')
    assert world.storage.log == [f'ensure {chat.chat_id}', f'sync ensure {chat.chat_id}']


async def test_create_chat_takes_its_directory_away_when_the_commit_fails(
    world: World,
) -> None:
    world.backend.failing = True
    with pytest.raises(ServiceUnavailableError):
        await world.create_chat(USER, 'title')
    [ensured, *rest] = world.storage.log
    assert ensured.startswith('ensure ')
    assert rest == ['delete chat', 'commit delete chat']


async def test_upload_commits_then_settles_the_disk_change(world: World) -> None:
    chat = await world.create_chat(USER, None)
    result = await world.upload(USER, chat.chat_id, 'a.txt', 'text/plain', body(b'12345'))
    assert result.replaced is False
    assert result.chat_file.size_bytes == 5
    # on success the staged file has become the attachment: nothing to discard
    assert world.storage.log[2:] == ['stage t0', 'put a.txt', 'sync put a.txt', 'commit put a.txt']
    assert await world.used_bytes() == 5


async def test_failed_commit_rolls_the_disk_back_and_charges_nothing(world: World) -> None:
    chat = await world.create_chat(USER, None)
    world.backend.failing = True
    with pytest.raises(ServiceUnavailableError):
        await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'12345'))
    assert world.storage.log[2:] == ['stage t0', 'put a.txt', 'rollback put a.txt', 'discard t0']
    world.backend.failing = False
    assert await world.used_bytes() == 0


async def test_declared_size_over_the_limit_is_refused_unread(world: World) -> None:
    chat = await world.create_chat(USER, None)
    with pytest.raises(FileTooLargeError):
        await world.upload(USER, chat.chat_id, 'a', None, body(b'x'), declared_size=MAX_FILE + 1)
    assert world.storage.chunks_read == 0


async def test_stream_over_max_file_size_is_file_too_large(world: World) -> None:
    chat = await world.create_chat(USER, None)
    with pytest.raises(FileTooLargeError):
        await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 40, b'x' * 40, b'x'))
    assert world.storage.chunks_read == 2  # refused as soon as the limit was crossed


async def test_stream_over_remaining_quota_is_quota_exceeded(world: World) -> None:
    chat = await world.create_chat(USER, None)
    await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 50))
    with pytest.raises(WorkspaceQuotaExceededError):
        await world.upload(USER, chat.chat_id, 'b', None, body(b'y' * 51))
    assert await world.used_bytes() == 50


async def test_replacement_gets_credit_for_the_file_it_replaces(world: World) -> None:
    chat = await world.create_chat(USER, None)
    await world.upload(USER, chat.chat_id, 'a', None, body(b'x' * 50))
    await world.upload(USER, chat.chat_id, 'b', None, body(b'x' * 40))
    result = await world.upload(USER, chat.chat_id, 'a', None, body(b'z' * 60))
    assert result.replaced is True
    assert await world.used_bytes() == 100


async def test_upload_to_another_users_chat_is_chat_not_found(world: World) -> None:
    chat = await world.create_chat(USER, None)
    await world.ensure_workspace(OTHER_USER)
    with pytest.raises(ChatNotFoundError):
        await world.upload(OTHER_USER, chat.chat_id, 'a', None, body(b'x'))
    assert 'stage t0' not in world.storage.log


async def test_stale_if_match_is_refused_before_reading(world: World) -> None:
    chat = await world.create_chat(USER, None)
    with pytest.raises(HistoryPreconditionFailedError):
        await world.write_history(USER, chat.chat_id, body(b'x'), if_match={'nope'})
    assert world.storage.chunks_read == 0


async def test_append_writes_at_the_committed_length(world: World) -> None:
    chat = await world.create_chat(USER, None)
    await world.append_history(USER, chat.chat_id, body(b'abc'))
    updated = await world.append_history(USER, chat.chat_id, body(b'de'))
    assert 'append history at 3' in world.storage.log
    assert updated.history_bytes == 5
    assert updated.history_revision == 2
    assert await world.used_bytes() == 5


async def test_a_small_declared_append_is_read_first_and_checked_under_the_lock(
    world: World,
) -> None:
    chat = await world.create_chat(USER, None)
    await world.ensure_workspace(OTHER_USER)
    await world.append_history(USER, chat.chat_id, body(b'x' * 50), declared_size=50)
    before = list(world.storage.log)
    # refused under the lock, after the body was read: what was staged is discarded
    with pytest.raises(ChatNotFoundError):
        await world.append_history(OTHER_USER, chat.chat_id, body(b'a'), declared_size=1)
    with pytest.raises(HistoryPreconditionFailedError):
        await world.append_history(
            USER, chat.chat_id, body(b'b'), declared_size=1, if_match={'nope'}
        )
    with pytest.raises(WorkspaceQuotaExceededError):
        await world.append_history(USER, chat.chat_id, body(b'c' * 51), declared_size=51)
    assert world.storage.log[len(before) :] == [
        'stage t1',
        'discard t1',
        'stage t2',
        'discard t2',
        'stage t3',
        'discard t3',
    ]
    assert await world.used_bytes() == 50


async def test_an_append_of_unknown_or_larger_size_is_checked_before_it_is_read(
    world: World,
) -> None:
    chat = await world.create_chat(USER, None)
    await world.ensure_workspace(OTHER_USER)
    with pytest.raises(ChatNotFoundError):
        await world.append_history(OTHER_USER, chat.chat_id, body(b'a'))
    with pytest.raises(HistoryPreconditionFailedError):
        await world.append_history(
            USER, chat.chat_id, body(b'b'), declared_size=20_000, if_match={'nope'}
        )
    assert world.storage.chunks_read == 0
    assert not any(entry.startswith('stage') for entry in world.storage.log)


async def test_only_content_that_is_renamed_into_place_is_staged_durably(world: World) -> None:
    chat = await world.create_chat(USER, None)
    await world.write_history(USER, chat.chat_id, body(b'abc'))
    await world.append_history(USER, chat.chat_id, body(b'de'))
    await world.upload(USER, chat.chat_id, 'a.txt', None, body(b'f'))
    # the history and the file replace what is there by a rename of the staged file; an
    # append copies its staged bytes into history.md and fsyncs them there
    assert world.storage.stage_durability == [True, False, True]


async def test_list_chats_pages_with_a_next_key(world: World) -> None:
    chats = [await world.create_chat(USER, str(i)) for i in range(3)]
    first = await world.list_chats(USER, 2, None)
    assert [c.chat_id for c in first.items] == [c.chat_id for c in chats[:2]]
    assert first.next_key is not None
    second = await world.list_chats(USER, 2, first.next_key)
    assert [c.chat_id for c in second.items] == [chats[2].chat_id]
    assert second.next_key is None

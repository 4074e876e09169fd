"""Idempotent creates on fakes: replay, reuse, expiry, races, nothing recorded on failure."""

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast
from uuid import UUID

import pytest

from domain.chat import Chat
from domain.error import (
    FileTooLargeError,
    IdempotencyKeyReusedError,
    ServiceUnavailableError,
)
from domain.idempotency import IdempotencyRecord, RecordedResponse
from repository.idempotency_key import InMemoryIdempotencyKeyRepository
from repository.memory_store import MemoryStore
from usecase.create_chat import CreateChat
from usecase.ensure_workspace import EnsureWorkspace
from usecase.idempotency import IdempotencyRequest
from usecase.publish import Publisher
from usecase.upload_attachment import UploadAttachment, UploadedAttachment
from usecase.write_history import WriteHistory

from .fakes import (
    FixedClock,
    RecordingBackend,
    RecordingBlobStore,
    RecordingUnitOfWork,
    RecordingViews,
    SequentialIds,
    blob_id,
    body,
)

USER = UUID('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa')
OTHER_USER = UUID('bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb')
QUOTA = 100
MAX_FILE = 60
KEY = 'retry-me'


class BlindKeyRepository(InMemoryIdempotencyKeyRepository):
    """Misses the first `blind_gets` lookups, as when a concurrent request commits its key
    between this request's lookup and its insert."""

    def __init__(self, store: MemoryStore, *, writable: bool, backend: 'RacingBackend') -> None:
        super().__init__(store, writable=writable)
        self._backend = backend

    async def get(self, user_id: UUID, key: str) -> IdempotencyRecord | None:
        if self._backend.blind_gets > 0:
            self._backend.blind_gets -= 1
            return None
        return await super().get(user_id, key)


class RacingUnitOfWork(RecordingUnitOfWork):
    def _bind(self, store: MemoryStore) -> None:
        super()._bind(store)
        backend = cast('RacingBackend', self._backend)
        self.idempotency_keys = BlindKeyRepository(store, writable=self._write, backend=backend)


class RacingBackend(RecordingBackend):
    blind_gets = 0

    def unit_of_work(
        self, *, write: bool = True, one_statement: bool = False, group: bool = False
    ) -> RecordingUnitOfWork:
        return RacingUnitOfWork(self, write=write)


def chat_answer(chat: Chat) -> RecordedResponse:
    return RecordedResponse(201, f'{{"chat_id":"{chat.chat_id}"}}', (('location', 'c'),))


def file_answer(uploaded: UploadedAttachment) -> RecordedResponse:
    status = 200 if uploaded.replaced else 201
    return RecordedResponse(status, f'{{"file_id":"{uploaded.chat_file.file_id}"}}')


def chat_request(fingerprint: str = 'f1', key: str = KEY) -> IdempotencyRequest[Chat]:
    return IdempotencyRequest(key, fingerprint, chat_answer)


def file_request(fingerprint: str = 'f1') -> IdempotencyRequest[UploadedAttachment]:
    return IdempotencyRequest(KEY, fingerprint, file_answer)


class World:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.backend = RacingBackend(self.log)
        self.blobs = RecordingBlobStore(self.log)
        self.views = RecordingViews(self.log, self.blobs)
        self.clock = FixedClock()
        self.ids = SequentialIds()
        uow = self.backend.unit_of_work
        publisher = Publisher(uow, self.blobs, self.views)
        self.ensure_workspace = EnsureWorkspace(uow, self.clock, self.ids, QUOTA)
        self.create_chat = CreateChat(uow, self.views, self.clock, self.ids)
        self.upload = UploadAttachment(uow, self.blobs, publisher, self.clock, MAX_FILE)
        self.write_history = WriteHistory(uow, self.blobs, publisher, self.clock, MAX_FILE)

    async def chats(self, user_id: UUID = USER) -> list[Chat]:
        async with self.backend.unit_of_work(write=False) as uow:
            workspace = await uow.workspaces.get_by_user_id(user_id)
            assert workspace is not None
            return await uow.chats.list_by_workspace_id(workspace.workspace_id)

    async def used_bytes(self) -> int:
        async with self.backend.unit_of_work(write=False) as uow:
            workspace = await uow.workspaces.get_by_user_id(USER)
        assert workspace is not None
        return workspace.used_bytes

    async def file_count(self, chat_id: UUID) -> int:
        async with self.backend.unit_of_work(write=False) as uow:
            return len(await uow.chat_files.list_by_chat_id(chat_id))

    async def record(self, key: str = KEY, user_id: UUID = USER) -> IdempotencyRecord | None:
        async with self.backend.unit_of_work(write=False) as uow:
            return await uow.idempotency_keys.get(user_id, key)


@pytest.fixture
async def world() -> World:
    world = World()
    await world.ensure_workspace(USER)
    return world


@pytest.fixture
async def chat_id(world: World) -> UUID:
    return (await world.create_chat(USER, 'files')).chat_id


async def test_create_chat_records_its_answer_with_the_chat(world: World) -> None:
    answer = await world.create_chat(USER, 'a', idempotency=chat_request())
    [chat] = await world.chats()
    assert answer == chat_answer(chat)
    record = await world.record()
    assert record is not None
    assert (record.request_hash, record.response) == ('f1', answer)


async def test_create_chat_retry_replays_and_creates_nothing(world: World) -> None:
    first = await world.create_chat(USER, 'a', idempotency=chat_request())
    [chat] = await world.chats()
    world.log.clear()
    again = await world.create_chat(USER, 'a', idempotency=chat_request())
    assert again == first
    assert await world.chats() == [chat]
    # the directory made before the lock is taken away again
    assert world.log == ['ensure_chat', 'begin', 'remove_chat']
    assert list(world.views.dirs) == [(chat.workspace_id, chat.chat_id)]


async def test_create_chat_same_key_other_request_is_reused(world: World) -> None:
    await world.create_chat(USER, 'a', idempotency=chat_request('f1'))
    with pytest.raises(IdempotencyKeyReusedError) as raised:
        await world.create_chat(USER, 'b', idempotency=chat_request('f2'))
    assert raised.value.key == KEY
    assert [c.title for c in await world.chats()] == ['a']


async def test_create_chat_keys_are_per_user(world: World) -> None:
    await world.ensure_workspace(OTHER_USER)
    mine = await world.create_chat(USER, 'a', idempotency=chat_request('f1'))
    theirs = await world.create_chat(OTHER_USER, 'b', idempotency=chat_request('f2'))
    assert mine != theirs
    assert len(await world.chats(USER)) == len(await world.chats(OTHER_USER)) == 1


async def test_create_chat_expired_key_counts_as_new(world: World) -> None:
    first = await world.create_chat(USER, 'a', idempotency=chat_request('f1'))
    world.clock.current += timedelta(hours=24)
    second = await world.create_chat(USER, 'b', idempotency=chat_request('f2'))
    assert second != first
    assert len(await world.chats()) == 2
    record = await world.record()
    assert record is not None
    assert record.request_hash == 'f2'


async def test_create_chat_key_just_under_a_day_old_still_replays(world: World) -> None:
    first = await world.create_chat(USER, 'a', idempotency=chat_request())
    world.clock.current += timedelta(hours=24) - timedelta(milliseconds=1)
    assert await world.create_chat(USER, 'a', idempotency=chat_request()) == first
    assert len(await world.chats()) == 1


async def test_recording_deletes_other_expired_keys(world: World) -> None:
    await world.create_chat(USER, 'a', idempotency=chat_request(key='old'))
    world.clock.current += timedelta(hours=25)
    await world.create_chat(USER, 'b', idempotency=chat_request(key='new'))
    assert await world.record('old') is None
    assert await world.record('new') is not None


async def test_create_chat_failed_commit_records_no_key(world: World) -> None:
    world.backend.commit_failure = ServiceUnavailableError()
    with pytest.raises(ServiceUnavailableError):
        await world.create_chat(USER, 'a', idempotency=chat_request())
    world.backend.commit_failure = None
    assert await world.record() is None
    assert await world.chats() == []


async def test_create_chat_losing_a_race_answers_as_a_retry(world: World) -> None:
    first = await world.create_chat(USER, 'a', idempotency=chat_request())
    world.backend.blind_gets = 1  # the retry's lookup misses the committed key
    again = await world.create_chat(USER, 'a', idempotency=chat_request())
    assert again == first
    assert len(await world.chats()) == 1


async def test_create_chat_losing_a_race_with_another_request_is_reused(world: World) -> None:
    await world.create_chat(USER, 'a', idempotency=chat_request('f1'))
    world.backend.blind_gets = 1
    with pytest.raises(IdempotencyKeyReusedError):
        await world.create_chat(USER, 'b', idempotency=chat_request('f2'))
    assert len(await world.chats()) == 1


async def test_upload_retry_is_hashed_not_staged(world: World, chat_id: UUID) -> None:
    first = await world.upload(
        USER, chat_id, 'a.txt', 'text/plain', body(b'hello ', b'world'), idempotency=file_request()
    )
    used = await world.used_bytes()
    log_before = list(world.log)
    again = await world.upload(
        USER, chat_id, 'a.txt', 'text/plain', body(b'hello', b' world'), idempotency=file_request()
    )
    assert again == first
    assert first.status_code == 201
    assert world.log == log_before  # nothing staged, put or discarded
    assert await world.used_bytes() == used
    assert await world.file_count(chat_id) == 1


async def test_upload_records_the_content_digest(world: World, chat_id: UUID) -> None:
    await world.upload(USER, chat_id, 'a.txt', None, body(b'abc'), idempotency=file_request())
    record = await world.record()
    assert record is not None
    digest = hashlib.sha256(b'abc').hexdigest()
    assert record.request_hash == hashlib.sha256(f'f1:{digest}'.encode()).hexdigest()


async def test_upload_retry_with_other_bytes_is_reused(world: World, chat_id: UUID) -> None:
    await world.upload(USER, chat_id, 'a.txt', None, body(b'one'), idempotency=file_request())
    used = await world.used_bytes()
    with pytest.raises(IdempotencyKeyReusedError):
        await world.upload(USER, chat_id, 'a.txt', None, body(b'two'), idempotency=file_request())
    assert await world.used_bytes() == used
    assert [e for e in world.log if e.startswith('stage')] == ['stage b1']


async def test_upload_retry_with_other_name_is_reused(world: World, chat_id: UUID) -> None:
    await world.upload(USER, chat_id, 'a.txt', None, body(b'one'), idempotency=file_request('f1'))
    with pytest.raises(IdempotencyKeyReusedError):
        await world.upload(
            USER, chat_id, 'b.txt', None, body(b'one'), idempotency=file_request('f2')
        )
    assert await world.file_count(chat_id) == 1


async def test_upload_retry_stops_reading_past_the_size_limit(world: World, chat_id: UUID) -> None:
    await world.upload(USER, chat_id, 'a.txt', None, body(b'x'), idempotency=file_request())
    chunks_seen = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_seen
        while True:
            chunks_seen += 1
            yield b'y' * 10

    with pytest.raises(IdempotencyKeyReusedError):
        await world.upload(USER, chat_id, 'a.txt', None, endless(), idempotency=file_request())
    assert chunks_seen == MAX_FILE // 10 + 1


async def test_upload_refused_records_no_key(world: World, chat_id: UUID) -> None:
    with pytest.raises(FileTooLargeError):
        await world.upload(
            USER, chat_id, 'a.txt', None, body(b'x' * (MAX_FILE + 1)), idempotency=file_request()
        )
    assert await world.record() is None
    answer = await world.upload(
        USER, chat_id, 'a.txt', None, body(b'small'), idempotency=file_request()
    )
    assert answer.status_code == 201


async def test_upload_losing_a_race_discards_its_staged_body(world: World, chat_id: UUID) -> None:
    first = await world.upload(USER, chat_id, 'a.txt', None, body(b'x'), idempotency=file_request())
    used = await world.used_bytes()
    world.backend.blind_gets = 2  # both lookups of the retry miss the committed key
    again = await world.upload(USER, chat_id, 'a.txt', None, body(b'x'), idempotency=file_request())
    assert again == first
    assert world.log[-3:] == ['stage b2', 'begin', 'discard b2']
    assert await world.used_bytes() == used
    assert await world.file_count(chat_id) == 1


async def test_upload_key_found_under_the_lock_discards_staged_body(
    world: World, chat_id: UUID
) -> None:
    first = await world.upload(USER, chat_id, 'a.txt', None, body(b'x'), idempotency=file_request())
    world.backend.blind_gets = 1  # committed by the first request while this one was staging
    again = await world.upload(USER, chat_id, 'a.txt', None, body(b'x'), idempotency=file_request())
    assert again == first
    assert world.log[-3:] == ['stage b2', 'begin', 'discard b2']
    assert await world.file_count(chat_id) == 1


async def test_upload_without_key_is_unchanged(world: World, chat_id: UUID) -> None:
    uploaded = await world.upload(USER, chat_id, 'a.txt', None, body(b'x'))
    assert isinstance(uploaded, UploadedAttachment)
    assert await world.record() is None


async def test_history_put_key_found_under_the_lock_discards_its_blob(
    world: World, chat_id: UUID
) -> None:
    first = await world.write_history(USER, chat_id, body(b'x'), idempotency=chat_request())
    world.backend.blind_gets = 1  # committed by the first request while this one was staging
    again = await world.write_history(USER, chat_id, body(b'x'), idempotency=chat_request())
    assert again == first
    assert world.log[-3:] == ['stage b2', 'begin', 'discard b2']
    [chat] = await world.chats()
    assert (chat.history_blob_id, chat.history_revision) == (blob_id(1), 1)

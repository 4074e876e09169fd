"""The history's base blob, its segments and the store inventory, on every metadata backend."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain.chat import Chat, ChatAttachmentName, ChatFile, HistorySegment
from domain.page import PageKey
from domain.workspace import Workspace
from repository.common import ReadOnlyUnitOfWorkError
from usecase.interface import MetadataBackend

USER_A = UUID('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa')
USER_B = UUID('bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb')
WS_A = UUID('11111111-1111-1111-1111-111111111111')
WS_B = UUID('22222222-2222-2222-2222-222222222222')
CHAT_A = UUID('33333333-3333-3333-3333-333333333333')
CHAT_B = UUID('44444444-4444-4444-4444-444444444444')
CHAT_C = UUID('77777777-7777-7777-7777-777777777777')
FILE_A = UUID('55555555-5555-5555-5555-555555555555')
FILE_B = UUID('66666666-6666-6666-6666-666666666666')
FILE_C = UUID('88888888-8888-8888-8888-888888888888')
BASE_A = UUID('b0000000-0000-0000-0000-00000000000a')
BASE_C = UUID('b0000000-0000-0000-0000-00000000000c')
SEGMENT_BLOB_A = UUID('5e000000-0000-0000-0000-00000000000a')
SEGMENT_BLOB_C = UUID('5e000000-0000-0000-0000-00000000000c')
UNNAMED = UUID('deadbeef-0000-0000-0000-000000000000')
WS_C = UUID('01000000-0000-0000-0000-000000000000')
USER_C = UUID('f0000000-0000-0000-0000-000000000000')
TS = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)
TS_2 = datetime(2026, 4, 1, 13, 0, 0, tzinfo=UTC)
TS_MICRO = datetime(2026, 4, 1, 12, 0, 0, 123456, tzinfo=UTC)


def a_workspace(
    workspace_id: UUID = WS_A,
    user_id: UUID = USER_A,
    *,
    used_bytes: int = 0,
    created_at: datetime = TS,
) -> Workspace:
    return Workspace(
        workspace_id=workspace_id,
        user_id=user_id,
        created_at=created_at,
        quota_bytes=1000,
        used_bytes=used_bytes,
    )


def a_chat(
    chat_id: UUID = CHAT_A,
    workspace_id: UUID = WS_A,
    *,
    history_blob_id: UUID | None = None,
    updated_at: datetime = TS,
) -> Chat:
    return Chat(
        chat_id=chat_id,
        workspace_id=workspace_id,
        created_at=TS,
        updated_at=updated_at,
        history_bytes=3,
        history_revision=2,
        history_blob_id=history_blob_id,
    )


def a_file(file_id: UUID = FILE_A, chat_id: UUID = CHAT_A, *, size_bytes: int = 1) -> ChatFile:
    return ChatFile(
        file_id=file_id,
        chat_id=chat_id,
        name=ChatAttachmentName(f'{file_id}.txt'),
        content_type='text/plain',
        size_bytes=size_bytes,
        created_at=TS,
        sha256='0' * 64,
    )


def a_blob_segment(
    revision: int, chat_id: UUID = CHAT_A, blob_id: UUID = SEGMENT_BLOB_A
) -> HistorySegment:
    return HistorySegment(chat_id=chat_id, revision=revision, size_bytes=4096, blob_id=blob_id)


def an_inline_segment(
    revision: int, chat_id: UUID = CHAT_A, content: bytes = b'ab'
) -> HistorySegment:
    return HistorySegment(
        chat_id=chat_id, revision=revision, size_bytes=len(content), content=content
    )


async def given(
    backend: MetadataBackend, *records: Workspace | Chat | ChatFile | HistorySegment
) -> None:
    """Commit `records`, parents first as given."""
    async with backend.unit_of_work() as uow:
        for record in records:
            if isinstance(record, Workspace):
                await uow.workspaces.save(record)
            elif isinstance(record, Chat):
                await uow.chats.save(record)
            elif isinstance(record, ChatFile):
                await uow.chat_files.save(record)
            else:
                await uow.history_segments.add(record)
        await uow.commit()


async def segments_of(
    backend: MetadataBackend, chat_id: UUID = CHAT_A, *, one_statement: bool = False
) -> list[HistorySegment]:
    async with backend.unit_of_work(write=False, one_statement=one_statement) as uow:
        return await uow.history_segments.list_by_chat_id(chat_id)


async def given_two_workspaces_naming_blobs(backend: MetadataBackend) -> None:
    """Chat A (workspace A) names FILE_A, BASE_A and SEGMENT_BLOB_A; chat B (workspace A)
    names nothing; chat C (workspace B) names FILE_C, BASE_C and SEGMENT_BLOB_C."""
    await given(
        backend,
        a_workspace(WS_A, USER_A),
        a_workspace(WS_B, USER_B),
        a_chat(CHAT_A, WS_A, history_blob_id=BASE_A),
        a_chat(CHAT_B, WS_A),
        a_chat(CHAT_C, WS_B, history_blob_id=BASE_C),
        a_file(FILE_A, CHAT_A),
        a_file(FILE_C, CHAT_C),
        a_blob_segment(3, CHAT_A, SEGMENT_BLOB_A),
        an_inline_segment(4, CHAT_A),
        a_blob_segment(3, CHAT_C, SEGMENT_BLOB_C),
    )


# --- Chat.history_blob_id ----------------------------------------------------------------


async def test_chat_history_blob_id_round_trips_through_every_chat_read(
    backend: MetadataBackend,
) -> None:
    chat = a_chat(history_blob_id=BASE_A)
    await given(backend, a_workspace(), chat)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.get(CHAT_A) == chat
        assert await uow.chats.get_many([CHAT_A]) == [chat]
        assert await uow.chats.get_with_workspace(USER_A, CHAT_A) == (a_workspace(), chat)
        assert await uow.chats.list_by_workspace_id(WS_A) == [chat]
        assert await uow.chats.list_by_user_id(USER_A, limit=10) == [chat]
        assert await uow.inventory.chats_changed_since(TS, after=None, limit=10) == [chat]


@pytest.mark.parametrize(
    'read',
    ['get', 'get_with_workspace', 'list_by_user_id', 'list_by_user_id_after'],
)
async def test_chat_history_blob_id_round_trips_through_one_statement_reads(
    backend: MetadataBackend, read: str
) -> None:
    chat = a_chat(history_blob_id=BASE_A)
    await given(backend, a_workspace(), chat)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        if read == 'get':
            assert await uow.chats.get(CHAT_A) == chat
        elif read == 'get_with_workspace':
            assert await uow.chats.get_with_workspace(USER_A, CHAT_A) == (a_workspace(), chat)
        elif read == 'list_by_user_id':
            assert await uow.chats.list_by_user_id(USER_A, limit=10) == [chat]
        else:
            before = PageKey(created_at=TS - timedelta(seconds=1), item_id=CHAT_A)
            assert await uow.chats.list_by_user_id(USER_A, limit=10, after=before) == [chat]


async def test_chat_save_replaces_history_blob_id_and_clears_it(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat(history_blob_id=BASE_A))
    await given(backend, a_chat(history_blob_id=BASE_C))
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.get(CHAT_A) == a_chat(history_blob_id=BASE_C)
    await given(backend, a_chat(history_blob_id=None))
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.get(CHAT_A) == a_chat(history_blob_id=None)


# --- history segments --------------------------------------------------------------------


async def test_segments_are_listed_by_revision(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(),
        an_inline_segment(12),
        a_blob_segment(3),
        an_inline_segment(7, content=b'\x00\xff'),
    )
    assert await segments_of(backend) == [
        a_blob_segment(3),
        an_inline_segment(7, content=b'\x00\xff'),
        an_inline_segment(12),
    ]


async def test_segments_round_trip_in_a_one_statement_unit(backend: MetadataBackend) -> None:
    await given(
        backend, a_workspace(), a_chat(), a_blob_segment(3), an_inline_segment(4, content=b'\x00')
    )
    assert await segments_of(backend, one_statement=True) == [
        a_blob_segment(3),
        an_inline_segment(4, content=b'\x00'),
    ]


async def test_segments_of_a_chat_without_any_are_empty(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat())
    assert await segments_of(backend) == []


async def test_segments_are_per_chat(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(CHAT_A),
        a_chat(CHAT_B),
        an_inline_segment(3, CHAT_A),
        an_inline_segment(3, CHAT_B, content=b'xyz'),
    )
    assert await segments_of(backend, CHAT_B) == [an_inline_segment(3, CHAT_B, content=b'xyz')]


async def test_segment_delete_up_to_keeps_the_later_ones(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(CHAT_A),
        a_chat(CHAT_B),
        *(an_inline_segment(revision) for revision in (3, 4, 5)),
        an_inline_segment(3, CHAT_B),
    )
    async with backend.unit_of_work() as uow:
        await uow.history_segments.delete_up_to(CHAT_A, 4)
        await uow.commit()
    assert await segments_of(backend) == [an_inline_segment(5)]
    assert await segments_of(backend, CHAT_B) == [an_inline_segment(3, CHAT_B)]


async def test_segment_delete_by_chat_id_leaves_other_chats(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(CHAT_A),
        a_chat(CHAT_B),
        an_inline_segment(3, CHAT_A),
        an_inline_segment(3, CHAT_B),
    )
    async with backend.unit_of_work() as uow:
        await uow.history_segments.delete_by_chat_id(CHAT_A)
        await uow.commit()
    assert await segments_of(backend, CHAT_A) == []
    assert await segments_of(backend, CHAT_B) == [an_inline_segment(3, CHAT_B)]


async def test_segments_not_committed_are_not_kept(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat())
    async with backend.unit_of_work() as uow:
        await uow.history_segments.add(an_inline_segment(3))
    assert await segments_of(backend) == []


async def test_read_unit_refuses_segment_writes(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat())
    async with backend.unit_of_work(write=False) as uow:
        with pytest.raises(ReadOnlyUnitOfWorkError):
            await uow.history_segments.add(an_inline_segment(3))
        with pytest.raises(ReadOnlyUnitOfWorkError):
            await uow.history_segments.delete_by_chat_id(CHAT_A)


async def test_chat_delete_deletes_its_segments(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(CHAT_A),
        a_chat(CHAT_B),
        a_blob_segment(3, CHAT_A),
        an_inline_segment(3, CHAT_B),
    )
    async with backend.unit_of_work() as uow:
        await uow.chats.delete(CHAT_A)
        await uow.commit()
    assert await segments_of(backend, CHAT_A) == []
    assert await segments_of(backend, CHAT_B) == [an_inline_segment(3, CHAT_B)]


async def test_chat_delete_by_workspace_id_deletes_their_segments(
    backend: MetadataBackend,
) -> None:
    await given(
        backend,
        a_workspace(WS_A, USER_A),
        a_workspace(WS_B, USER_B),
        a_chat(CHAT_A, WS_A),
        a_chat(CHAT_C, WS_B),
        a_blob_segment(3, CHAT_A),
        an_inline_segment(3, CHAT_C),
    )
    async with backend.unit_of_work() as uow:
        await uow.chats.delete_by_workspace_id(WS_A)
        await uow.commit()
    assert await segments_of(backend, CHAT_A) == []
    assert await segments_of(backend, CHAT_C) == [an_inline_segment(3, CHAT_C)]
    # a new chat of the same id starts without the old one's segments
    await given(backend, a_chat(CHAT_A, WS_B))
    assert await segments_of(backend, CHAT_A) == []


# --- store inventory ---------------------------------------------------------------------


async def test_inventory_names_attachments_bases_and_segment_blobs(
    backend: MetadataBackend,
) -> None:
    await given_two_workspaces_naming_blobs(backend)
    asked = {FILE_A, BASE_A, SEGMENT_BLOB_A, FILE_C, BASE_C, SEGMENT_BLOB_C, UNNAMED}
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.named(asked) == asked - {UNNAMED}
        assert await uow.inventory.named([UNNAMED]) == set()
        assert await uow.inventory.named([]) == set()


async def test_inventory_named_answers_more_ids_than_one_statement_binds(
    backend: MetadataBackend,
) -> None:
    await given_two_workspaces_naming_blobs(backend)
    asked = [UUID(int=n) for n in range(1, 1200)] + [FILE_A, BASE_C, SEGMENT_BLOB_A]
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.named(asked) == {FILE_A, BASE_C, SEGMENT_BLOB_A}


async def test_inventory_forgets_what_no_row_names_any_more(backend: MetadataBackend) -> None:
    await given_two_workspaces_naming_blobs(backend)
    async with backend.unit_of_work() as uow:
        await uow.chat_files.delete(FILE_A)
        await uow.history_segments.delete_up_to(CHAT_A, 3)
        await uow.chats.save(a_chat(CHAT_A, WS_A, history_blob_id=None))
        await uow.commit()
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.named([FILE_A, BASE_A, SEGMENT_BLOB_A]) == set()


async def test_inventory_of_chat_is_every_blob_its_rows_name(backend: MetadataBackend) -> None:
    await given_two_workspaces_naming_blobs(backend)
    async with backend.unit_of_work(write=False) as uow:
        assert sorted(await uow.inventory.of_chat(CHAT_A)) == sorted(
            [FILE_A, BASE_A, SEGMENT_BLOB_A]
        )
        assert await uow.inventory.of_chat(CHAT_B) == []
        assert await uow.inventory.of_chat(UNNAMED) == []


async def test_inventory_of_workspace_is_every_blob_of_its_chats(
    backend: MetadataBackend,
) -> None:
    await given_two_workspaces_naming_blobs(backend)
    async with backend.unit_of_work(write=False) as uow:
        assert sorted(await uow.inventory.of_workspace(WS_B)) == sorted(
            [FILE_C, BASE_C, SEGMENT_BLOB_C]
        )
        assert sorted(await uow.inventory.of_workspace(WS_A)) == sorted(
            [FILE_A, BASE_A, SEGMENT_BLOB_A]
        )
        assert await uow.inventory.of_workspace(UNNAMED) == []


async def test_inventory_lists_each_blob_once(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(history_blob_id=BASE_A),
        a_blob_segment(3, blob_id=BASE_A),
    )
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.of_chat(CHAT_A) == [BASE_A]
        assert await uow.inventory.of_workspace(WS_A) == [BASE_A]


async def test_chats_changed_since_pages_by_chat_id(backend: MetadataBackend) -> None:
    early = TS - timedelta(microseconds=1)
    chats = [
        a_chat(CHAT_C, updated_at=TS_2),
        a_chat(CHAT_A, updated_at=TS),
        a_chat(CHAT_B, updated_at=early),
    ]
    await given(backend, a_workspace(), *chats)
    async with backend.unit_of_work(write=False) as uow:
        changed = await uow.inventory.chats_changed_since(TS, after=None, limit=10)
        first = await uow.inventory.chats_changed_since(TS, after=None, limit=1)
        rest = await uow.inventory.chats_changed_since(TS, after=CHAT_A, limit=10)
        everything = await uow.inventory.chats_changed_since(early, after=None, limit=10)
        none = await uow.inventory.chats_changed_since(TS, after=CHAT_C, limit=10)
    assert changed == [chats[1], chats[0]]
    assert first == [chats[1]]
    assert rest == [chats[0]]
    assert [chat.chat_id for chat in everything] == [CHAT_A, CHAT_B, CHAT_C]
    assert none == []


async def test_chats_changed_since_sees_a_later_save(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat(updated_at=TS))
    later = replace(a_chat(), updated_at=TS_2, history_blob_id=BASE_A)
    await given(backend, later)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.chats_changed_since(TS_2, after=None, limit=10) == [later]


async def test_inventory_chat_file_bytes_sums_the_chats_files(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(),
        a_chat(CHAT_A),
        a_chat(CHAT_B),
        a_file(FILE_A, CHAT_A, size_bytes=3_000_000_000),
        a_file(FILE_B, CHAT_A, size_bytes=5),
        a_file(FILE_C, CHAT_B, size_bytes=7),
    )
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.chat_file_bytes(CHAT_A) == 3_000_000_005


async def test_inventory_chat_file_bytes_of_a_chat_without_files_is_zero(
    backend: MetadataBackend,
) -> None:
    await given(backend, a_workspace(), a_chat())
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.chat_file_bytes(CHAT_A) == 0


async def test_inventory_workspace_stored_bytes_sums_histories_and_files(
    backend: MetadataBackend,
) -> None:
    await given(
        backend,
        a_workspace(WS_A, USER_A),
        a_workspace(WS_B, USER_B),
        replace(a_chat(CHAT_A, WS_A), history_bytes=3_000_000_000),
        replace(a_chat(CHAT_B, WS_A), history_bytes=11),
        replace(a_chat(CHAT_C, WS_B), history_bytes=13),
        a_file(FILE_A, CHAT_A, size_bytes=5),
        a_file(FILE_B, CHAT_B, size_bytes=7),
        a_file(FILE_C, CHAT_C, size_bytes=17),
    )
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.inventory.workspace_stored_bytes(WS_A) == 3_000_000_023
        assert await uow.inventory.workspace_stored_bytes(WS_B) == 30
        assert await uow.inventory.workspace_stored_bytes(UNNAMED) == 0

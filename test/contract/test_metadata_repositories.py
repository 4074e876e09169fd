"""One contract for every metadata backend: memory, SQLite and PostgreSQL."""

import asyncio
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import inspect, text

from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.error import InsufficientStorageError, ServiceUnavailableError
from domain.idempotency import IdempotencyRecord, RecordedResponse
from domain.page import PageKey
from domain.sandbox import SandboxSession
from domain.workspace import Workspace
from repository.common import ReadOnlyUnitOfWorkError
from repository.memory import InMemoryUnitOfWork
from repository.migrations import HEAD_REVISION
from repository.sql.asyncpg_reads import AsyncpgTransactionConnection
from repository.sql.backend import (
    MIGRATIONS_DIR,
    PostgresMetadataBackend,
    SqliteMetadataBackend,
    SqlMetadataBackend,
)
from repository.sql.loop_sqlite import LoopConnection
from usecase.interface import MetadataBackend

ROOT = Path(__file__).resolve().parents[2]
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
SESSION_A = UUID('99999999-9999-9999-9999-999999999999')
SESSION_B = UUID('aaaaaaaa-0000-0000-0000-000000000000')
# ids whose order differs from their insertion order below
ID_LOW = UUID('00000000-0000-0000-0000-0000000000ff')
ID_MID = UUID('01000000-0000-0000-0000-000000000000')
ID_HIGH = UUID('f0000000-0000-0000-0000-000000000000')
TS = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)
TS_2 = datetime(2026, 4, 1, 13, 0, 0, tzinfo=UTC)
TS_MICRO = datetime(2026, 4, 1, 12, 0, 0, 123456, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
QUOTA = 1_000

Record = Workspace | Chat | ChatFile | SandboxSession
BackendFactory = Callable[[], MetadataBackend]


def a_workspace(
    workspace_id: UUID = WS_A,
    user_id: UUID = USER_A,
    *,
    quota_bytes: int = QUOTA,
    used_bytes: int = 0,
    created_at: datetime = TS,
) -> Workspace:
    return Workspace(
        workspace_id=workspace_id,
        user_id=user_id,
        created_at=created_at,
        quota_bytes=quota_bytes,
        used_bytes=used_bytes,
    )


def a_chat(chat_id: UUID = CHAT_A, workspace_id: UUID = WS_A, created_at: datetime = TS) -> Chat:
    return Chat(
        chat_id=chat_id, workspace_id=workspace_id, created_at=created_at, updated_at=created_at
    )


def a_file(
    file_id: UUID = FILE_A,
    chat_id: UUID = CHAT_A,
    name: str = 'a.txt',
    *,
    size_bytes: int = 1,
    created_at: datetime = TS,
    content_type: str | None = 'text/plain',
) -> ChatFile:
    return ChatFile(
        file_id=file_id,
        chat_id=chat_id,
        name=ChatAttachmentName(name),
        content_type=content_type,
        size_bytes=size_bytes,
        created_at=created_at,
        sha256='0' * 64,
    )


def a_session(
    chat_id: UUID = CHAT_A,
    *,
    session_id: UUID = SESSION_A,
    expires_at: datetime = TS_2,
) -> SandboxSession:
    return SandboxSession(
        sandbox_session_id=session_id,
        chat_id=chat_id,
        started_at=TS,
        expires_at=expires_at,
    )


async def given(backend: MetadataBackend, *records: Record) -> None:
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
                await uow.sandbox_sessions.save(record)
        await uow.commit()


async def given_two_workspaces_with_chats(backend: MetadataBackend) -> None:
    await given(
        backend,
        a_workspace(WS_A, USER_A),
        a_workspace(WS_B, USER_B),
        a_chat(CHAT_A, WS_A),
        a_chat(CHAT_B, WS_A, TS_2),
        a_chat(CHAT_C, WS_B),
    )


# --- the seed's repository tests ---------------------------------------------------------


async def test_workspace_get_by_user_id(backend: MetadataBackend) -> None:
    ws = a_workspace()
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(ws)
        assert await uow.workspaces.get(WS_A) == ws
        assert await uow.workspaces.get_by_user_id(USER_A) == ws
        assert await uow.workspaces.get_by_user_id(USER_B) is None


async def test_workspace_replace_for_user(backend: MetadataBackend) -> None:
    new_ws = a_workspace(WS_B, USER_A, created_at=TS_2)
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.workspaces.save(new_ws)
        assert await uow.workspaces.get_by_user_id(USER_A) == new_ws
        assert await uow.workspaces.get(WS_A) is None
        assert await uow.workspaces.get(WS_B) == new_ws


async def test_chat_crud_workspace_scope(backend: MetadataBackend) -> None:
    chat_a = a_chat(CHAT_A, WS_A, TS)
    chat_b = a_chat(CHAT_B, WS_A, TS_2)
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.chats.save(chat_a)
        await uow.chats.save(chat_b)

        assert await uow.chats.list_by_workspace_id(WS_A) == [chat_a, chat_b]
        assert await uow.chats.get(CHAT_A) == chat_a
        await uow.chats.delete(CHAT_A)
        assert await uow.chats.get(CHAT_A) is None
        assert await uow.chats.list_by_workspace_id(WS_A) == [chat_b]


async def test_chat_list_only_same_workspace(backend: MetadataBackend) -> None:
    chat_a = a_chat(CHAT_A, WS_A, TS)
    chat_b = a_chat(CHAT_B, WS_B, TS_2)
    await given(backend, a_workspace(WS_A, USER_A), a_workspace(WS_B, USER_B), chat_a, chat_b)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.list_by_workspace_id(WS_A) == [chat_a]
        assert await uow.chats.list_by_workspace_id(WS_B) == [chat_b]


async def test_chat_file_metadata_save_get_list_delete_clear(backend: MetadataBackend) -> None:
    name_a = ChatAttachmentName('doc.pdf')
    f_a = a_file(FILE_A, name='doc.pdf', content_type='application/pdf', size_bytes=100)
    f_b = a_file(FILE_B, name='x.png', content_type='image/png', size_bytes=200, created_at=TS_2)
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.chats.save(a_chat())
        await uow.chat_files.save(f_a)
        await uow.chat_files.save(f_b)

        assert await uow.chat_files.get(FILE_A) == f_a
        assert await uow.chat_files.get_by_chat_id_and_name(CHAT_A, name_a) == f_a
        assert await uow.chat_files.list_by_chat_id(CHAT_A) == [f_a, f_b]

        await uow.chat_files.delete(FILE_A)
        assert await uow.chat_files.get(FILE_A) is None
        assert await uow.chat_files.get_by_chat_id_and_name(CHAT_A, name_a) is None

        await uow.chat_files.save(f_a)
        await uow.chat_files.delete_by_chat_id(CHAT_A)
        assert await uow.chat_files.list_by_chat_id(CHAT_A) == []


async def test_chat_file_same_name_replaced_by_new_id(backend: MetadataBackend) -> None:
    name = ChatAttachmentName('a.txt')
    first = a_file(FILE_A, name='a.txt', size_bytes=1)
    second = a_file(FILE_B, name='a.txt', size_bytes=2, created_at=TS_2)
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.chats.save(a_chat())
        await uow.chat_files.save(first)
        await uow.chat_files.save(second)
        assert await uow.chat_files.get(FILE_A) is None
        assert await uow.chat_files.get(FILE_B) == second
        assert await uow.chat_files.get_by_chat_id_and_name(CHAT_A, name) == second


# --- workspaces ----------------------------------------------------------------------------


async def test_workspace_get_unknown_is_none(backend: MetadataBackend) -> None:
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None


async def test_workspace_add_inserts(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add(a_workspace()) is True
        assert await uow.workspaces.get_by_user_id(USER_A) == a_workspace()


async def test_workspace_second_add_for_same_user_returns_false(backend: MetadataBackend) -> None:
    await given(backend, a_workspace())
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add(a_workspace(WS_B, USER_A)) is False
        assert await uow.workspaces.get_by_user_id(USER_A) == a_workspace()
        assert await uow.workspaces.get(WS_B) is None


async def test_workspace_add_of_taken_id_returns_false(backend: MetadataBackend) -> None:
    await given(backend, a_workspace())
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add(a_workspace(WS_A, USER_B)) is False
        assert await uow.workspaces.get_by_user_id(USER_B) is None


async def test_workspace_save_replaces_by_id(backend: MetadataBackend) -> None:
    await given(backend, a_workspace())
    changed = a_workspace(quota_bytes=5_000, used_bytes=42)
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(changed)
        assert await uow.workspaces.get(WS_A) == changed


async def test_workspace_get_by_user_id_for_update(backend: MetadataBackend) -> None:
    await given(backend, a_workspace())
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.get_by_user_id(USER_A, for_update=True) == a_workspace()
        assert await uow.workspaces.get_by_user_id(USER_B, for_update=True) is None


async def test_workspace_for_update_makes_second_writer_wait(backend: MetadataBackend) -> None:
    await given(backend, a_workspace())
    seen_used_bytes: list[int] = []

    async def second_writer() -> None:
        async with backend.unit_of_work() as uow:
            workspace = await uow.workspaces.get_by_user_id(USER_A, for_update=True)
            assert workspace is not None
            seen_used_bytes.append(workspace.used_bytes)

    async with backend.unit_of_work() as first:
        await first.workspaces.get_by_user_id(USER_A, for_update=True)
        task = asyncio.create_task(second_writer())
        await asyncio.sleep(0.2)
        assert seen_used_bytes == []
        assert await first.workspaces.add_used_bytes(WS_A, 10)
        await first.commit()
    await asyncio.wait_for(task, timeout=10)
    assert seen_used_bytes == [10]


async def test_workspace_add_used_bytes_within_quota(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(used_bytes=100))
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WS_A, 400) is True
        workspace = await uow.workspaces.get(WS_A)
        assert workspace is not None
        assert workspace.used_bytes == 500


async def test_workspace_add_used_bytes_up_to_exact_quota(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(used_bytes=100))
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WS_A, QUOTA - 100) is True
        workspace = await uow.workspaces.get(WS_A)
        assert workspace is not None
        assert workspace.used_bytes == QUOTA


async def test_workspace_add_used_bytes_over_quota_changes_nothing(
    backend: MetadataBackend,
) -> None:
    await given(backend, a_workspace(used_bytes=100))
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WS_A, QUOTA - 99) is False
        workspace = await uow.workspaces.get(WS_A)
        assert workspace is not None
        assert workspace.used_bytes == 100


async def test_workspace_add_used_bytes_negative_applies_even_over_quota(
    backend: MetadataBackend,
) -> None:
    await given(backend, a_workspace(quota_bytes=100, used_bytes=300))
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WS_A, -50) is True
        workspace = await uow.workspaces.get(WS_A)
        assert workspace is not None
        assert workspace.used_bytes == 250


async def test_workspace_add_used_bytes_unknown_workspace_is_false(
    backend: MetadataBackend,
) -> None:
    async with backend.unit_of_work() as uow:
        assert await uow.workspaces.add_used_bytes(WS_A, 1) is False


async def test_workspace_delete(backend: MetadataBackend) -> None:
    await given(backend, a_workspace())
    async with backend.unit_of_work() as uow:
        await uow.workspaces.delete(WS_A)
        assert await uow.workspaces.get(WS_A) is None
        assert await uow.workspaces.get_by_user_id(USER_A) is None
        assert await uow.workspaces.add(a_workspace(WS_B, USER_A)) is True


# --- chats ---------------------------------------------------------------------------------


async def test_chat_save_replaces_by_id(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat())
    changed = Chat(
        chat_id=CHAT_A,
        workspace_id=WS_A,
        created_at=TS,
        updated_at=TS_2,
        title='Plans',
        history_bytes=1234,
        history_revision=7,
        file_count=3,
    )
    async with backend.unit_of_work() as uow:
        await uow.chats.save(changed)
        assert await uow.chats.get(CHAT_A) == changed


async def test_chat_delete_unknown_is_no_error(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.chats.delete(CHAT_A)
        assert await uow.chats.get(CHAT_A) is None


async def test_chat_delete_by_workspace_id(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    async with backend.unit_of_work() as uow:
        await uow.chats.delete_by_workspace_id(WS_A)
        assert await uow.chats.list_by_workspace_id(WS_A) == []
        assert await uow.chats.list_by_workspace_id(WS_B) == [a_chat(CHAT_C, WS_B)]


async def test_chat_list_limit(backend: MetadataBackend) -> None:
    chats = [
        a_chat(chat_id, WS_A, TS + i * ONE_MICROSECOND)
        for i, chat_id in enumerate((CHAT_C, CHAT_A, CHAT_B))
    ]
    await given(backend, a_workspace(), *chats)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.list_by_workspace_id(WS_A, limit=2) == chats[:2]


async def test_chat_list_limit_zero_is_empty(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat())
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.list_by_workspace_id(WS_A, limit=0) == []


async def test_chat_list_after_key(backend: MetadataBackend) -> None:
    chats = [
        a_chat(chat_id, WS_A, TS + i * ONE_MICROSECOND)
        for i, chat_id in enumerate((CHAT_C, CHAT_A, CHAT_B))
    ]
    await given(backend, a_workspace(), *chats)
    after = PageKey(created_at=chats[1].created_at, item_id=chats[1].chat_id)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chats.list_by_workspace_id(WS_A, after=after) == chats[2:]


async def test_chat_page_of_a_user_is_the_page_of_their_workspace(
    backend: MetadataBackend,
) -> None:
    chats = [
        a_chat(chat_id, WS_A, TS + i * ONE_MICROSECOND)
        for i, chat_id in enumerate((CHAT_C, CHAT_A, CHAT_B))
    ]
    other = a_workspace(WS_B, USER_B)
    await given(backend, a_workspace(), other, *chats, a_chat(ID_HIGH, WS_B))
    after = PageKey(created_at=chats[0].created_at, item_id=chats[0].chat_id)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        first = await uow.chats.list_by_user_id(USER_A, limit=2)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        rest = await uow.chats.list_by_user_id(USER_A, limit=5, after=after)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        nobody = await uow.chats.list_by_user_id(UUID(int=7), limit=5)
    assert first == chats[:2]
    assert rest == chats[1:]
    assert nobody == []


async def test_chat_list_same_microsecond_ordered_by_id(backend: MetadataBackend) -> None:
    high, low, mid = (a_chat(chat_id, WS_A, TS_MICRO) for chat_id in (ID_HIGH, ID_LOW, ID_MID))
    await given(backend, a_workspace(), high, low, mid)
    async with backend.unit_of_work(write=False) as uow:
        first_page = await uow.chats.list_by_workspace_id(WS_A, limit=2)
        after = PageKey(created_at=first_page[-1].created_at, item_id=first_page[-1].chat_id)
        second_page = await uow.chats.list_by_workspace_id(WS_A, limit=2, after=after)
    assert first_page == [low, mid]
    assert second_page == [high]


async def test_chat_list_orders_instants_not_offsets(backend: MetadataBackend) -> None:
    # 12:00 at +02:00 is 10:00 UTC, one hour before the 11:00 UTC chat
    early = a_chat(CHAT_B, WS_A, datetime(2026, 4, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    late = a_chat(CHAT_A, WS_A, datetime(2026, 4, 1, 11, 0, tzinfo=UTC))
    await given(backend, a_workspace(), late, early)
    async with backend.unit_of_work(write=False) as uow:
        listed = await uow.chats.list_by_workspace_id(WS_A)
    assert [chat.chat_id for chat in listed] == [CHAT_B, CHAT_A]


async def test_timestamps_round_trip_with_microseconds(backend: MetadataBackend) -> None:
    updated_at = datetime(2026, 4, 1, 14, 30, 0, 654321, tzinfo=timezone(timedelta(hours=2)))
    chat = Chat(chat_id=CHAT_A, workspace_id=WS_A, created_at=TS_MICRO, updated_at=updated_at)
    await given(backend, a_workspace(), chat)
    async with backend.unit_of_work(write=False) as uow:
        read = await uow.chats.get(CHAT_A)
    assert read is not None
    assert read.created_at == TS_MICRO
    assert read.created_at.tzinfo is not None
    assert read.updated_at.astimezone(UTC) == updated_at.astimezone(UTC)
    assert read.updated_at.astimezone(UTC).microsecond == 654321


# --- chat files ----------------------------------------------------------------------------


async def test_chat_file_list_pages_by_created_at_then_id(backend: MetadataBackend) -> None:
    files = [
        a_file(ID_LOW, name='low', created_at=TS_MICRO),
        a_file(ID_MID, name='mid', created_at=TS_MICRO),
        a_file(ID_HIGH, name='high', created_at=TS_MICRO),
        a_file(FILE_A, name='later', created_at=TS_MICRO + ONE_MICROSECOND),
    ]
    await given(backend, a_workspace(), a_chat(), *reversed(files))
    async with backend.unit_of_work(write=False) as uow:
        first_page = await uow.chat_files.list_by_chat_id(CHAT_A, limit=2)
        after = PageKey(created_at=first_page[-1].created_at, item_id=first_page[-1].file_id)
        second_page = await uow.chat_files.list_by_chat_id(CHAT_A, limit=2, after=after)
    assert first_page == files[:2]
    assert second_page == files[2:]


async def test_file_page_of_a_user_only_lists_a_chat_of_their_workspace(
    backend: MetadataBackend,
) -> None:
    files = [
        a_file(FILE_A, name='a', created_at=TS),
        a_file(FILE_B, name='b', created_at=TS + ONE_MICROSECOND),
        a_file(FILE_C, name='c', created_at=TS + 2 * ONE_MICROSECOND),
    ]
    await given(backend, a_workspace(), a_workspace(WS_B, USER_B), a_chat(), *files)
    after = PageKey(created_at=files[0].created_at, item_id=files[0].file_id)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        first = await uow.chat_files.list_by_chat_of_user(USER_A, CHAT_A, limit=2)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        rest = await uow.chat_files.list_by_chat_of_user(USER_A, CHAT_A, limit=5, after=after)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        # user B has a workspace, but the chat is not in it
        foreign = await uow.chat_files.list_by_chat_of_user(USER_B, CHAT_A, limit=5)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        missing = await uow.chat_files.list_by_chat_of_user(USER_A, CHAT_B, limit=5)
    assert first == files[:2]
    assert rest == files[1:]
    assert foreign == []
    assert missing == []


async def test_chat_file_save_same_id_with_new_name_frees_old_name(
    backend: MetadataBackend,
) -> None:
    await given(backend, a_workspace(), a_chat(), a_file(FILE_A, name='old.txt'))
    renamed = a_file(FILE_A, name='new.txt')
    reuse = a_file(FILE_B, name='old.txt')
    async with backend.unit_of_work() as uow:
        await uow.chat_files.save(renamed)
        await uow.chat_files.save(reuse)
        assert await uow.chat_files.get(FILE_A) == renamed
        assert (
            await uow.chat_files.get_by_chat_id_and_name(CHAT_A, ChatAttachmentName('old.txt'))
            == reuse
        )


async def test_chat_file_without_content_type_round_trips(backend: MetadataBackend) -> None:
    chat_file = a_file(content_type=None)
    await given(backend, a_workspace(), a_chat(), chat_file)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.chat_files.get(FILE_A) == chat_file


async def test_chat_get_many_returns_the_chats_that_exist(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    async with backend.unit_of_work(write=False) as uow:
        found = await uow.chats.get_many([CHAT_A, CHAT_C, ID_LOW, CHAT_A])
        assert sorted(chat.chat_id for chat in found) == [CHAT_A, CHAT_C]
        assert {chat.chat_id: chat.workspace_id for chat in found}[CHAT_C] == WS_B
        assert await uow.chats.get_many([]) == []


async def test_chat_get_many_reads_more_ids_than_one_statement_binds(
    backend: MetadataBackend,
) -> None:
    chats = [
        a_chat(UUID(int=index + 1), WS_A, TS + index * ONE_MICROSECOND) for index in range(700)
    ]
    await given(backend, a_workspace(), *chats)
    asked = [chat.chat_id for chat in chats] + [UUID(int=10_000 + i) for i in range(40_000)]
    async with backend.unit_of_work(write=False) as uow:
        found = await uow.chats.get_many(asked)
    assert sorted(chat.chat_id for chat in found) == [chat.chat_id for chat in chats]


async def test_chat_file_delete_unknown_is_no_error(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.chat_files.delete(FILE_A)
        assert await uow.chat_files.get(FILE_A) is None


async def test_chat_file_delete_by_workspace_id(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    kept = a_file(FILE_C, CHAT_C, 'c')
    await given(backend, a_file(FILE_A, CHAT_A, 'a'), a_file(FILE_B, CHAT_B, 'b'), kept)
    async with backend.unit_of_work() as uow:
        await uow.chat_files.delete_by_workspace_id(WS_A)
        assert await uow.chat_files.get(FILE_A) is None
        assert await uow.chat_files.get(FILE_B) is None
        assert await uow.chat_files.list_by_chat_id(CHAT_C) == [kept]


# --- sandbox sessions ----------------------------------------------------------------------


async def test_sandbox_session_active_before_expiry(backend: MetadataBackend) -> None:
    session = a_session(expires_at=TS_2)
    await given(backend, a_workspace(), a_chat(), session)
    async with backend.unit_of_work(write=False) as uow:
        assert (
            await uow.sandbox_sessions.get_active_by_chat_id(CHAT_A, TS_2 - ONE_MICROSECOND)
            == session
        )


async def test_sandbox_session_expired_at_expiry_instant(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat(), a_session(expires_at=TS_2))
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.sandbox_sessions.get_active_by_chat_id(CHAT_A, TS_2) is None


async def test_sandbox_session_save_replaces_chats_session(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat(), a_session(session_id=SESSION_A, expires_at=TS))
    replacement = a_session(session_id=SESSION_B, expires_at=TS_2)
    async with backend.unit_of_work() as uow:
        await uow.sandbox_sessions.save(replacement)
        assert await uow.sandbox_sessions.get_active_by_chat_id(CHAT_A, TS) == replacement


async def test_sandbox_exists_active_in_workspace(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    await given(backend, a_session(CHAT_B, expires_at=TS_2))
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.sandbox_sessions.exists_active_in_workspace(WS_A, TS) is True
        assert await uow.sandbox_sessions.exists_active_in_workspace(WS_B, TS) is False


async def test_sandbox_exists_active_ignores_expired(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    await given(backend, a_session(CHAT_A, expires_at=TS_2))
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.sandbox_sessions.exists_active_in_workspace(WS_A, TS_2) is False


async def test_sandbox_count_active_across_workspaces(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    await given(
        backend,
        a_session(CHAT_A, session_id=SESSION_A, expires_at=TS_2),
        a_session(CHAT_C, session_id=SESSION_B, expires_at=TS_2),
    )
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.sandbox_sessions.count_active(TS) == 2
        assert await uow.sandbox_sessions.count_active(TS_2) == 0


async def test_sandbox_count_active_of_empty_store_is_zero(backend: MetadataBackend) -> None:
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.sandbox_sessions.count_active(TS) == 0


async def test_sandbox_delete_by_chat_id(backend: MetadataBackend) -> None:
    await given(backend, a_workspace(), a_chat(), a_session(expires_at=TS_2))
    async with backend.unit_of_work() as uow:
        await uow.sandbox_sessions.delete_by_chat_id(CHAT_A)
        await uow.sandbox_sessions.delete_by_chat_id(CHAT_A)
        assert await uow.sandbox_sessions.get_active_by_chat_id(CHAT_A, TS) is None


async def test_sandbox_delete_by_workspace_id(backend: MetadataBackend) -> None:
    await given_two_workspaces_with_chats(backend)
    kept = a_session(CHAT_C, session_id=SESSION_B)
    await given(backend, a_session(CHAT_A), a_session(CHAT_B, session_id=ID_LOW), kept)
    async with backend.unit_of_work() as uow:
        await uow.sandbox_sessions.delete_by_workspace_id(WS_A)
        assert await uow.sandbox_sessions.exists_active_in_workspace(WS_A, TS) is False
        assert await uow.sandbox_sessions.get_active_by_chat_id(CHAT_C, TS) == kept


# --- units of work -------------------------------------------------------------------------


async def test_unit_of_work_without_commit_leaves_nothing(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.chats.save(a_chat())
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None
        assert await uow.chats.get(CHAT_A) is None


async def test_unit_of_work_failing_block_rolls_back(backend: MetadataBackend) -> None:
    async def save_then_fail() -> None:
        async with backend.unit_of_work() as uow:
            await uow.workspaces.save(a_workspace())
            raise LookupError

    with pytest.raises(LookupError):
        await save_then_fail()
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None


async def test_unit_of_work_rollback_drops_changes(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.rollback()
        assert await uow.workspaces.get(WS_A) is None
        await uow.workspaces.save(a_workspace(WS_B, USER_B))
        await uow.commit()
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None
        assert await uow.workspaces.get(WS_B) == a_workspace(WS_B, USER_B)


async def test_unit_of_work_commit_persists(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.commit()
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) == a_workspace()


async def test_unit_of_work_changes_after_commit_roll_back(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        await uow.commit()
        await uow.workspaces.add_used_bytes(WS_A, 10)
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) == a_workspace()


class CommitHook:
    """Wraps the backend's own commit step (our code, not its driver: the memory unit's
    `_commit`, SQLite's `LoopConnection.commit`, `AsyncpgTransactionConnection.commit`
    for PostgreSQL). Each commit reports that it started, waits for `release`, then
    fails with `error` when that is set, or runs."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.error: Exception | None = None

    async def before(self) -> None:
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error


@pytest.fixture
def commit_hook(backend_name: str, monkeypatch: pytest.MonkeyPatch) -> CommitHook:
    hook = CommitHook()
    owner: type[InMemoryUnitOfWork | LoopConnection | AsyncpgTransactionConnection]
    owner, name = {
        'memory': (InMemoryUnitOfWork, '_commit'),
        'sqlite': (LoopConnection, 'commit'),
        'postgres': (AsyncpgTransactionConnection, 'commit'),
    }[backend_name]
    original: Callable[[object], Awaitable[None]] = getattr(owner, name)

    async def commit(self: object) -> None:
        await hook.before()
        await original(self)

    monkeypatch.setattr(owner, name, commit)
    return hook


async def test_a_failing_commit_commits_nothing(
    backend: MetadataBackend, commit_hook: CommitHook
) -> None:
    commit_hook.error = InsufficientStorageError()

    async with backend.unit_of_work() as uow:
        await uow.workspaces.save(a_workspace())
        with pytest.raises(InsufficientStorageError):
            await uow.commit()
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None


async def test_a_commit_runs_to_its_end_when_its_caller_is_cancelled(
    backend: MetadataBackend, commit_hook: CommitHook
) -> None:
    commit_hook.release.clear()
    reached: list[str] = []

    async def commit_then_go_on() -> None:
        async with backend.unit_of_work() as uow:
            await uow.workspaces.save(a_workspace())
            await uow.commit()
            reached.append('committed')
            await asyncio.sleep(0)
            reached.append('went on')

    task = asyncio.create_task(commit_then_go_on())
    await asyncio.wait_for(commit_hook.started.wait(), 10)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # the commit waits for its end, cancelled or not
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None  # not committed yet
    commit_hook.release.set()

    with pytest.raises(asyncio.CancelledError):
        await task
    # the outcome came first (the rows committed); the cancellation after it
    assert reached == ['committed']
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) == a_workspace()


async def test_read_unit_refuses_writes(backend: MetadataBackend) -> None:
    async with backend.unit_of_work(write=False) as uow:
        with pytest.raises(ReadOnlyUnitOfWorkError):
            await uow.workspaces.save(a_workspace())


async def test_read_unit_does_not_see_uncommitted_writes(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as writer:
        await writer.workspaces.save(a_workspace())
        async with backend.unit_of_work(write=False) as reader:
            assert await reader.workspaces.get(WS_A) is None


async def test_write_units_are_serialised(backend: MetadataBackend, backend_name: str) -> None:
    if backend_name == 'postgres':
        pytest.skip('PostgreSQL writers serialise on the rows they lock, not on the store')
    entered: list[str] = []

    async def second_writer() -> None:
        async with backend.unit_of_work():
            entered.append('second')

    async with backend.unit_of_work():
        task = asyncio.create_task(second_writer())
        await asyncio.sleep(0.2)
        assert entered == []
    await asyncio.wait_for(task, timeout=10)
    assert entered == ['second']


# --- backend lifecycle ---------------------------------------------------------------------


async def test_migrate_is_idempotent(backend: MetadataBackend) -> None:
    await backend.migrate()
    await backend.migrate()
    await given(backend, a_workspace())
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) == a_workspace()


async def test_health_check_is_true_when_reachable(backend: MetadataBackend) -> None:
    assert await backend.health_check() is True


async def test_connect_and_close_are_idempotent(make_backend: BackendFactory) -> None:
    backend = make_backend()
    await backend.connect()
    await backend.connect()
    await backend.close()
    await backend.close()


async def test_migration_creates_every_table(backend: MetadataBackend, backend_name: str) -> None:
    if not isinstance(backend, SqlMetadataBackend):
        pytest.skip(f'{backend_name} has no schema')
    async with backend.engine().connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert names >= {
        'workspaces',
        'chats',
        'chat_files',
        'sandbox_sessions',
        'idempotency_keys',
        'history_segments',
    }


def test_head_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - as the server: only here

    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    assert scripts.get_heads() == [HEAD_REVISION]


async def test_migrate_at_head_needs_no_alembic(tmp_path: Path) -> None:
    """A schema at head is recognised without Alembic, which the server then never imports."""
    path = tmp_path / 'metadata.sqlite3'
    first = SqliteMetadataBackend(path)
    await first.migrate()
    await first.close()
    script = f"""
import asyncio, sys
from pathlib import Path
from repository.sql.backend import SqliteMetadataBackend
async def main():
    backend = SqliteMetadataBackend(Path({str(path)!r}))
    await backend.migrate()
    await backend.close()
asyncio.run(main())
assert not [name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')]
"""
    completed = subprocess.run(
        [sys.executable, '-c', script], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode(errors='replace')


# --- SQLite --------------------------------------------------------------------------------


async def test_sqlite_commit_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / 'nested' / 'dir' / 'metadata.sqlite3'
    first = SqliteMetadataBackend(path)
    await first.migrate()
    await given(first, a_workspace(), a_chat(created_at=TS_MICRO))
    await first.close()

    reopened = SqliteMetadataBackend(path)
    try:
        await reopened.migrate()
        async with reopened.unit_of_work(write=False) as uow:
            assert await uow.workspaces.get(WS_A) == a_workspace()
            assert await uow.chats.get(CHAT_A) == a_chat(created_at=TS_MICRO)
    finally:
        await reopened.close()


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    try:
        async with backend.engine().connect() as connection:
            journal_mode = (await connection.exec_driver_sql('PRAGMA journal_mode')).scalar()
            synchronous = (await connection.exec_driver_sql('PRAGMA synchronous')).scalar()
            foreign_keys = (await connection.exec_driver_sql('PRAGMA foreign_keys')).scalar()
            busy_timeout = (await connection.exec_driver_sql('PRAGMA busy_timeout')).scalar()
    finally:
        await backend.close()
    assert journal_mode == 'wal'
    assert synchronous == 2  # FULL
    assert foreign_keys == 1
    assert isinstance(busy_timeout, int)
    assert busy_timeout >= 5000


def _other_process_can_begin_write(path: Path) -> bool:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute('BEGIN IMMEDIATE')
        connection.execute('ROLLBACK')
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
    return True


async def test_sqlite_write_unit_takes_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / 'metadata.sqlite3'
    backend = SqliteMetadataBackend(path)
    await backend.migrate()
    try:
        async with backend.unit_of_work():
            assert _other_process_can_begin_write(path) is False
        assert _other_process_can_begin_write(path) is True
    finally:
        await backend.close()


async def test_sqlite_write_unit_waits_off_the_loop_for_another_process(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE is tried without waiting; a lock held elsewhere is waited for in a
    thread, while the event loop goes on, and the unit then runs with the busy timeout."""
    path = tmp_path / 'metadata.sqlite3'
    backend = SqliteMetadataBackend(path)
    await backend.migrate()
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> int:
        async with backend.unit_of_work() as uow:
            await uow.workspaces.add(a_workspace())
            await uow.commit()
        async with backend.unit_of_work(write=False) as uow:
            session = uow._session
            result = await session.execute(text('PRAGMA busy_timeout'))
            return int(result.scalar_one())

    ticker = asyncio.create_task(tick())
    try:
        holder.execute('BEGIN IMMEDIATE')
        writer = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writer.done()
        assert ticks >= 10  # the loop was never blocked by the waiting writer
        holder.execute('ROLLBACK')
        busy_timeout_ms = await asyncio.wait_for(writer, 10)
        async with backend.unit_of_work(write=False) as uow:
            assert await uow.workspaces.get(WS_A) == a_workspace()
    finally:
        ticker.cancel()
        holder.close()
        await backend.close()
    assert busy_timeout_ms >= 5000  # the no-wait attempt restored the busy timeout


async def test_sqlite_read_unit_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / 'metadata.sqlite3'
    backend = SqliteMetadataBackend(path)
    await backend.migrate()
    try:
        async with backend.unit_of_work(write=False) as uow:
            await uow.workspaces.get(WS_A)
            assert _other_process_can_begin_write(path) is True
    finally:
        await backend.close()


# --- PostgreSQL ----------------------------------------------------------------------------

UNREACHABLE_DSN = 'postgresql://chat:s3cret-pw@127.0.0.1:1/chat_storage'


async def test_postgres_unreachable_unit_of_work_is_service_unavailable() -> None:
    backend = PostgresMetadataBackend(UNREACHABLE_DSN, connect_timeout_seconds=1)
    try:
        with pytest.raises(ServiceUnavailableError) as raised:
            async with backend.unit_of_work():
                pass
    finally:
        await backend.close()
    assert str(raised.value) == 'service_unavailable'
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ is True
    assert 's3cret-pw' not in ''.join(traceback.format_exception(raised.value))


async def test_postgres_unreachable_health_check_is_false() -> None:
    backend = PostgresMetadataBackend(UNREACHABLE_DSN, connect_timeout_seconds=1)
    try:
        assert await backend.health_check() is False
    finally:
        await backend.close()


async def test_postgres_backend_repr_hides_dsn() -> None:
    assert 's3cret-pw' not in repr(PostgresMetadataBackend(UNREACHABLE_DSN))


@pytest.mark.postgres
async def test_postgres_statement_timeout_from_config(migrated_postgres_dsn: str) -> None:
    backend = PostgresMetadataBackend(migrated_postgres_dsn, statement_timeout_seconds=12.5)
    try:
        async with backend.engine().connect() as connection:
            timeout = (await connection.exec_driver_sql('SHOW statement_timeout')).scalar()
    finally:
        await backend.close()
    assert timeout == '12500ms'


@pytest.mark.postgres
async def test_postgres_concurrent_migrations_all_succeed(fresh_postgres_dsn: str) -> None:
    backends = [PostgresMetadataBackend(fresh_postgres_dsn, pool_size=1) for _ in range(3)]
    try:
        await asyncio.gather(*(backend.migrate() for backend in backends))
        await given(backends[0], a_workspace())
    finally:
        for backend in backends:
            await backend.close()


# --- idempotency keys ----------------------------------------------------------------------

KEY_CUTOFF = TS - timedelta(hours=24)


def a_key_record(
    key: str = 'key-1',
    user_id: UUID = USER_A,
    *,
    request_hash: str = 'h1',
    created_at: datetime = TS,
    body: str = '{"chat_id":"c1"}',
) -> IdempotencyRecord:
    return IdempotencyRecord(
        user_id=user_id,
        key=key,
        request_hash=request_hash,
        response=RecordedResponse(
            status_code=201, body=body, headers=(('location', '/v1/chats/c1'),)
        ),
        created_at=created_at,
    )


async def add_key(backend: MetadataBackend, record: IdempotencyRecord) -> bool:
    async with backend.unit_of_work() as uow:
        added = await uow.idempotency_keys.add(record, expiry_cutoff=KEY_CUTOFF)
        await uow.commit()
    return added


async def stored_key(
    backend: MetadataBackend, key: str = 'key-1', user_id: UUID = USER_A
) -> IdempotencyRecord | None:
    async with backend.unit_of_work(write=False) as uow:
        return await uow.idempotency_keys.get(user_id, key)


async def test_idempotency_key_round_trips(backend: MetadataBackend) -> None:
    record = a_key_record('ключ ✓ ' + 'k' * 200, created_at=TS_MICRO, body='{"title":"é ✓"}')
    assert await add_key(backend, record) is True
    assert await stored_key(backend, record.key) == record


async def test_idempotency_key_unknown_is_none(backend: MetadataBackend) -> None:
    await add_key(backend, a_key_record('key-1'))
    assert await stored_key(backend, 'key-2') is None
    assert await stored_key(backend, 'key-1', USER_B) is None


async def test_idempotency_keys_are_per_user(backend: MetadataBackend) -> None:
    assert await add_key(backend, a_key_record(user_id=USER_A, request_hash='a')) is True
    assert await add_key(backend, a_key_record(user_id=USER_B, request_hash='b')) is True
    stored_a, stored_b = await stored_key(backend), await stored_key(backend, user_id=USER_B)
    assert (stored_a and stored_a.request_hash, stored_b and stored_b.request_hash) == ('a', 'b')


async def test_idempotency_key_live_is_kept(backend: MetadataBackend) -> None:
    first = a_key_record(request_hash='first', created_at=KEY_CUTOFF + ONE_MICROSECOND)
    await add_key(backend, first)
    assert await add_key(backend, a_key_record(request_hash='second')) is False
    assert await stored_key(backend) == first


async def test_idempotency_key_expired_is_replaced(backend: MetadataBackend) -> None:
    await add_key(backend, a_key_record(request_hash='old', created_at=KEY_CUTOFF))
    newer = a_key_record(request_hash='new')
    assert await add_key(backend, newer) is True
    assert await stored_key(backend) == newer


async def test_idempotency_key_delete_expired_oldest_first_up_to_limit(
    backend: MetadataBackend,
) -> None:
    for index, age in enumerate([3, 1, 2]):  # hours past the cutoff
        await add_key(
            backend, a_key_record(f'old-{index}', created_at=KEY_CUTOFF - timedelta(hours=age))
        )
    await add_key(backend, a_key_record('live', created_at=KEY_CUTOFF + ONE_MICROSECOND))
    async with backend.unit_of_work() as uow:
        deleted = await uow.idempotency_keys.delete_expired(KEY_CUTOFF, limit=2)
        await uow.commit()
    assert deleted == 2
    remaining = {k for k in ['old-0', 'old-1', 'old-2', 'live'] if await stored_key(backend, k)}
    assert remaining == {'old-1', 'live'}


async def test_idempotency_key_delete_expired_spares_live_keys(backend: MetadataBackend) -> None:
    await add_key(backend, a_key_record('live', created_at=KEY_CUTOFF + ONE_MICROSECOND))
    async with backend.unit_of_work() as uow:
        assert await uow.idempotency_keys.delete_expired(KEY_CUTOFF, limit=100) == 0
        await uow.commit()
    assert await stored_key(backend, 'live') is not None


async def test_idempotency_key_not_committed_is_not_kept(backend: MetadataBackend) -> None:
    async with backend.unit_of_work() as uow:
        await uow.idempotency_keys.add(a_key_record(), expiry_cutoff=KEY_CUTOFF)
    assert await stored_key(backend) is None


async def test_idempotency_key_read_unit_refuses_add(backend: MetadataBackend) -> None:
    async with backend.unit_of_work(write=False) as uow:
        with pytest.raises(ReadOnlyUnitOfWorkError):
            await uow.idempotency_keys.add(a_key_record(), expiry_cutoff=KEY_CUTOFF)


async def test_idempotency_key_concurrent_adds_have_one_winner(backend: MetadataBackend) -> None:
    # PostgreSQL: the second insert waits for the first transaction on the key's row;
    # memory and SQLite: the second writer waits for the first at its start
    added_first = asyncio.Event()

    async def second() -> bool:
        await added_first.wait()
        async with backend.unit_of_work() as uow:
            added = await uow.idempotency_keys.add(
                a_key_record(request_hash='second'), expiry_cutoff=KEY_CUTOFF
            )
            await uow.commit()
        return added

    task = asyncio.create_task(second())
    async with backend.unit_of_work() as uow:
        assert await uow.idempotency_keys.add(
            a_key_record(request_hash='first'), expiry_cutoff=KEY_CUTOFF
        )
        added_first.set()
        await asyncio.sleep(0.05)  # lets the second writer queue up behind this one
        await uow.commit()
    assert await asyncio.wait_for(task, timeout=10) is False
    stored = await stored_key(backend)
    assert stored is not None
    assert stored.request_hash == 'first'


# --- one-statement read units --------------------------------------------------------------


async def test_a_one_statement_unit_reads_what_a_transaction_reads(
    backend: MetadataBackend,
) -> None:
    await given_two_workspaces_with_chats(backend)
    async with backend.unit_of_work(write=False) as uow:
        in_transaction = await uow.chats.get_with_workspace(USER_A, CHAT_B)
        foreign = await uow.chats.get_with_workspace(USER_A, CHAT_C)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        assert await uow.chats.get_with_workspace(USER_A, CHAT_B) == in_transaction
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        assert await uow.chats.get_with_workspace(USER_A, CHAT_C) == foreign
    assert in_transaction[1] == a_chat(CHAT_B, WS_A, TS_2)
    assert foreign == (a_workspace(WS_A, USER_A), None)


async def test_a_one_statement_unit_refuses_a_second_statement(
    backend: MetadataBackend, backend_name: str
) -> None:
    if backend_name == 'memory':
        pytest.skip('memory reads one snapshot whatever the unit runs')
    await given_two_workspaces_with_chats(backend)
    async with backend.unit_of_work(write=False, one_statement=True) as uow:
        await uow.chats.get_with_workspace(USER_A, CHAT_A)
        with pytest.raises(RuntimeError, match='second statement'):
            await uow.chats.get(CHAT_B)


async def test_a_write_unit_promising_one_statement_still_rolls_back(
    backend: MetadataBackend,
) -> None:
    # a write unit asking for one statement still begins a transaction: its writes commit
    # or roll back together
    async with backend.unit_of_work(write=True, one_statement=True) as uow:
        await uow.workspaces.save(a_workspace())
    async with backend.unit_of_work(write=False) as uow:
        assert await uow.workspaces.get(WS_A) is None

"""Migration 0002 on a database at 0001 that holds rows, on SQLite and PostgreSQL."""

from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import insert, inspect

from domain.chat import Chat, HistorySegment
from repository.migrations import HEAD_REVISION
from repository.sql import tables
from repository.sql.backend import (
    PostgresMetadataBackend,
    SqliteMetadataBackend,
    SqlMetadataBackend,
)
from repository.sql.metadata_backend import upgrade_to
from repository.sql.unit_of_work import WRITE_OPTION

USER = UUID('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa')
WORKSPACE = UUID('11111111-1111-1111-1111-111111111111')
CHAT = UUID('33333333-3333-3333-3333-333333333333')
BLOB = UUID('b0000000-0000-0000-0000-00000000000a')
TS = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)
CHAT_AT_0001 = Chat(
    chat_id=CHAT,
    workspace_id=WORKSPACE,
    created_at=TS,
    updated_at=TS,
    title='before',
    history_bytes=5,
    history_revision=2,
    file_count=0,
)


async def at_0001_with_a_chat(backend: SqlMetadataBackend) -> None:
    """The schema of revision 0001, holding a workspace and a chat written in its columns."""
    async with backend.engine().connect() as connection:
        await connection.execution_options(**{WRITE_OPTION: True})
        async with connection.begin():
            await connection.run_sync(partial(upgrade_to, '0001'))
            await connection.execute(
                insert(tables.workspaces).values(
                    workspace_id=WORKSPACE,
                    user_id=USER,
                    created_at=TS,
                    quota_bytes=1000,
                    used_bytes=5,
                )
            )
            await connection.execute(
                insert(tables.chats).values(
                    chat_id=CHAT,
                    workspace_id=WORKSPACE,
                    title='before',
                    created_at=TS,
                    updated_at=TS,
                    history_bytes=5,
                    history_revision=2,
                    file_count=0,
                )
            )


async def check_migrated(backend: SqlMetadataBackend) -> None:
    await backend.migrate()
    async with backend.engine().connect() as connection:
        schema = await connection.run_sync(
            lambda sync: (
                {index['name'] for index in inspect(sync).get_indexes('chats')},
                {column['name'] for column in inspect(sync).get_columns('history_segments')},
            )
        )
        versions = await connection.exec_driver_sql('SELECT version_num FROM alembic_version')
        assert versions.scalars().all() == [HEAD_REVISION]
    chat_indexes, segment_columns = schema
    assert {'ix_chats_history_blob_id', 'ix_chats_updated_at'} <= chat_indexes
    assert segment_columns == {'chat_id', 'revision', 'size_bytes', 'blob_id', 'content'}
    async with backend.unit_of_work(write=False) as uow:
        # the chats of before have an empty base
        assert await uow.chats.get(CHAT) == CHAT_AT_0001
        assert await uow.history_segments.list_by_chat_id(CHAT) == []
    segment = HistorySegment(chat_id=CHAT, revision=3, size_bytes=4, content=b'more')
    async with backend.unit_of_work() as uow:
        await uow.chats.save(replace(CHAT_AT_0001, history_blob_id=BLOB))
        await uow.history_segments.add(segment)
        await uow.commit()
    async with backend.unit_of_work(write=False) as uow:
        chat = await uow.chats.get(CHAT)
        assert chat is not None
        assert chat.history_blob_id == BLOB
        assert await uow.history_segments.list_by_chat_id(CHAT) == [segment]
        assert await uow.inventory.named([BLOB]) == {BLOB}


async def test_sqlite_migrates_a_database_with_rows_from_0001(tmp_path: Path) -> None:
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    try:
        await at_0001_with_a_chat(backend)
        await check_migrated(backend)
    finally:
        await backend.close()


@pytest.mark.postgres
async def test_postgres_migrates_a_database_with_rows_from_0001(fresh_postgres_dsn: str) -> None:
    backend = PostgresMetadataBackend(fresh_postgres_dsn, pool_size=2)
    try:
        await at_0001_with_a_chat(backend)
        await check_migrated(backend)
    finally:
        await backend.close()


async def test_sqlite_migration_keeps_the_foreign_keys_of_the_chats(tmp_path: Path) -> None:
    """The column is added in place: the tables that refer to `chats` still do."""
    backend = SqliteMetadataBackend(tmp_path / 'metadata.sqlite3')
    try:
        await at_0001_with_a_chat(backend)
        await backend.migrate()
        async with backend.engine().connect() as connection:
            referred = await connection.run_sync(
                lambda sync: {
                    (name, key['referred_table'], key['options'].get('ondelete'))
                    for name in ('chat_files', 'sandbox_sessions', 'history_segments')
                    for key in inspect(sync).get_foreign_keys(name)
                }
            )
    finally:
        await backend.close()
    assert referred == {
        ('chat_files', 'chats', None),
        ('sandbox_sessions', 'chats', None),
        ('history_segments', 'chats', 'CASCADE'),
    }

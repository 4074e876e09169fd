"""Large workspaces for the growth measurement, written straight into the metadata store.

Creating 100,000 chats through HTTP would take longer than the whole bench, so the rows
go in through the service's own tables (`repository/sql/tables.py`) in one transaction.
The chat that the measurements list and upload to gets its directory, `history.md` and
every attachment on disk, exactly where the service keeps them; the other chats, which no
measured request touches, get no directory: creating and removing 200,000 empty
directories and files would take minutes of the bench's time and change no figure.
"""

import asyncio
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import insert

from domain.page import PageKey
from repository.config import MetadataConfig
from repository.factory import create_metadata_backend
from repository.sql import tables
from repository.sql.backend import SqlMetadataBackend
from repository.sql.unit_of_work import WRITE_OPTION

BATCH_ROWS = 5_000
SEED_QUOTA_BYTES = 1 << 40
FILE_CONTENT_TYPE = 'application/octet-stream'
# the page size of the growth list requests (`bench.measure`)
PAGE_ITEMS = 50


@dataclass(frozen=True, slots=True)
class SeededWorkspace:
    """A workspace of `chats` chats; its first chat holds all `files` attachments.

    `last_page_key` is the key after which the last page of 50 chats starts (the first
    chat's when there are fewer): a page deep in the list, as a client paging to the end
    asks for it."""

    user_id: UUID
    workspace_id: UUID
    files_chat_id: UUID
    chats: int
    files: int
    last_page_key: PageKey


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH_ROWS):
        yield rows[start : start + BATCH_ROWS]


def _rows(
    workspace: SeededWorkspace,
    chat_ids: list[UUID],
    start: datetime,
    file_bytes: int,
    file_sha256: str,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    workspace_row = {
        'workspace_id': workspace.workspace_id,
        'user_id': workspace.user_id,
        'created_at': start,
        'quota_bytes': SEED_QUOTA_BYTES,
        'used_bytes': workspace.files * file_bytes,
    }
    chat_rows = [
        {
            'chat_id': chat_id,
            'workspace_id': workspace.workspace_id,
            'title': f'chat {index}',
            'created_at': start + timedelta(microseconds=index),
            'updated_at': start + timedelta(microseconds=index),
            'history_bytes': 0,
            'history_revision': 0,
            'file_count': workspace.files if chat_id == workspace.files_chat_id else 0,
        }
        for index, chat_id in enumerate(chat_ids)
    ]
    file_rows = [
        {
            'file_id': uuid4(),
            'chat_id': workspace.files_chat_id,
            'name': file_name(index),
            'content_type': FILE_CONTENT_TYPE,
            'size_bytes': file_bytes,
            'sha256': file_sha256,
            'created_at': start + timedelta(microseconds=index),
        }
        for index in range(workspace.files)
    ]
    return workspace_row, chat_rows, file_rows


def file_name(index: int) -> str:
    return f'seed-{index:06d}.bin'


async def _insert(
    config: MetadataConfig,
    workspace_row: dict[str, Any],
    chat_rows: list[dict[str, Any]],
    file_rows: list[dict[str, Any]],
) -> None:
    backend = create_metadata_backend(config)
    if not isinstance(backend, SqlMetadataBackend):
        raise TypeError('seeding needs a SQL backend')
    try:
        async with backend.engine().connect() as connection:
            await connection.execution_options(**{WRITE_OPTION: True})
            async with connection.begin():
                await connection.execute(insert(tables.workspaces), [workspace_row])
                for batch in _batches(chat_rows):
                    await connection.execute(insert(tables.chats), batch)
                for batch in _batches(file_rows):
                    await connection.execute(insert(tables.chat_files), batch)
            if connection.dialect.name == 'postgresql':
                # what autovacuum does within a minute of a table growing by 10 %: without
                # it the planner guesses a chat has ~50 files and reads all 10,000 of this
                # one to sort them, where with statistics it walks the index for 51
                async with connection.begin():
                    await connection.exec_driver_sql('ANALYZE workspaces, chats, chat_files')
    finally:
        await backend.close()


def _write_disk(data_dir: Path, workspace: SeededWorkspace, content: bytes) -> None:
    files_dir = data_dir / 'workspaces' / str(workspace.workspace_id) / 'chats'
    files_dir /= str(workspace.files_chat_id)
    files_dir.mkdir(parents=True)
    (files_dir / 'history.md').touch()
    for index in range(workspace.files):
        (files_dir / file_name(index)).write_bytes(content)
    os.sync()


def seed_workspace(
    config: MetadataConfig, data_dir: Path, *, chats: int, files: int, file_bytes: int
) -> SeededWorkspace:
    """A new user's workspace with `chats` chats and `files` files of `file_bytes` bytes."""
    chat_ids = [uuid4() for _ in range(chats)]
    # a day ago, one microsecond apart: before anything the bench creates over HTTP
    start = datetime.now(UTC) - timedelta(days=1)
    last_page_after = max(0, chats - PAGE_ITEMS - 1)
    workspace = SeededWorkspace(
        user_id=uuid4(),
        workspace_id=uuid4(),
        files_chat_id=chat_ids[0],
        chats=chats,
        files=files,
        last_page_key=PageKey(
            start + timedelta(microseconds=last_page_after), chat_ids[last_page_after]
        ),
    )
    content = os.urandom(file_bytes)
    workspace_row, chat_rows, file_rows = _rows(
        workspace, chat_ids, start, file_bytes, hashlib.sha256(content).hexdigest()
    )
    _write_disk(data_dir, workspace, content)
    asyncio.run(_insert(config, workspace_row, chat_rows, file_rows))
    return workspace

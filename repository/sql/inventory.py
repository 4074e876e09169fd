"""The store inventory of the SQL backends: which blobs the rows name, which chats changed."""

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from sqlalchemy import ColumnElement, CompoundSelect, select, union

from domain.chat import Chat
from repository.common import check_limit
from repository.sql.chat import CHAT_SHAPE
from repository.sql.session import SqlSession
from repository.sql.statements import IDS_PER_READ
from repository.sql.tables import chat_files, chats, history_segments
from usecase.interface import StoreInventory


def _names(
    files: ColumnElement[bool], bases: ColumnElement[bool], segments: ColumnElement[bool]
) -> CompoundSelect[UUID]:
    """The distinct blob ids of the attachments, history bases and segments matching each
    condition (the joins to `chats` let a condition name the chat's columns)."""
    return union(
        select(chat_files.c.file_id.label('blob_id'))
        .select_from(chat_files.join(chats, chats.c.chat_id == chat_files.c.chat_id))
        .where(files),
        select(chats.c.history_blob_id).where(chats.c.history_blob_id.is_not(None), bases),
        select(history_segments.c.blob_id)
        .select_from(history_segments.join(chats, chats.c.chat_id == history_segments.c.chat_id))
        .where(history_segments.c.blob_id.is_not(None), segments),
    )


class SqlStoreInventory(StoreInventory):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def named(self, blob_ids: Collection[UUID]) -> set[UUID]:
        found: set[UUID] = set()
        ids = list(set(blob_ids))
        for start in range(0, len(ids), IDS_PER_READ):
            batch = ids[start : start + IDS_PER_READ]
            result = await self._session.execute(
                union(
                    select(chat_files.c.file_id.label('blob_id')).where(
                        chat_files.c.file_id.in_(batch)
                    ),
                    select(chats.c.history_blob_id).where(chats.c.history_blob_id.in_(batch)),
                    select(history_segments.c.blob_id).where(history_segments.c.blob_id.in_(batch)),
                )
            )
            found.update(result.scalars())
        return found

    async def of_chat(self, chat_id: UUID) -> list[UUID]:
        return await self._ids(_names(*[chats.c.chat_id == chat_id] * 3))

    async def of_workspace(self, workspace_id: UUID) -> list[UUID]:
        return await self._ids(_names(*[chats.c.workspace_id == workspace_id] * 3))

    async def chats_changed_since(
        self, since: datetime, *, after: UUID | None, limit: int
    ) -> list[Chat]:
        check_limit(limit)
        statement = select(chats).where(chats.c.updated_at >= since)
        if after is not None:
            statement = statement.where(chats.c.chat_id > after)
        result = await self._session.execute(statement.order_by(chats.c.chat_id).limit(limit))
        return [CHAT_SHAPE.of_mapping(row) for row in result.mappings()]

    async def _ids(self, statement: CompoundSelect[UUID]) -> list[UUID]:
        result = await self._session.execute(statement)
        return list(result.scalars())

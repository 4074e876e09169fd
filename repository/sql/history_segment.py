"""The history segments of the SQL backends."""

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, delete, insert, select

from domain.chat import Chat, HistorySegment
from domain.workspace import Workspace
from repository.sql.chat import CHAT_SHAPE
from repository.sql.read_plan import RowShape
from repository.sql.session import SqlSession
from repository.sql.tables import chats, history_segments, workspaces
from repository.sql.workspace import workspace_of
from usecase.interface import HistorySegmentRepository

# built once: an append adds a segment, a history read lists them (ADR 019)
SEGMENT_INSERT = insert(history_segments).values(
    {column.name: bindparam(f'b_{column.name}', type_=column.type) for column in history_segments.c}
)
SEGMENTS_OF_CHAT = (
    select(history_segments)
    .where(history_segments.c.chat_id == bindparam('b_chat_id'))
    .order_by(history_segments.c.revision)
)
SEGMENT_SHAPE = RowShape(HistorySegment, tuple(field.name for field in fields(HistorySegment)))

_CHAT_COLUMNS = tuple(column.label(f'chat_{column.name}') for column in chats.c)
_SEGMENT_COLUMNS = tuple(column.label(f'seg_{column.name}') for column in history_segments.c)
_SEGMENTS_OF_THE_CHAT = history_segments.c.chat_id == chats.c.chat_id
# a chat and its segments in one statement, so in one snapshot whatever the isolation:
# a history read never mixes a base with the segments of another
HISTORY = (
    select(*_CHAT_COLUMNS, *_SEGMENT_COLUMNS)
    .select_from(chats.outerjoin(history_segments, _SEGMENTS_OF_THE_CHAT))
    .where(chats.c.chat_id == bindparam('chat_id'))
    .order_by(history_segments.c.revision)
)
# the same, with the user's workspace: the chat's columns are NULL when it is missing or
# in another workspace
HISTORY_OF_USER = (
    select(*workspaces.c, *_CHAT_COLUMNS, *_SEGMENT_COLUMNS)
    .select_from(
        workspaces.outerjoin(
            chats,
            and_(
                chats.c.workspace_id == workspaces.c.workspace_id,
                chats.c.chat_id == bindparam('chat_id'),
            ),
        ).outerjoin(history_segments, _SEGMENTS_OF_THE_CHAT)
    )
    .where(workspaces.c.user_id == bindparam('user_id'))
    .order_by(history_segments.c.revision)
)


def _history(rows: Sequence[Mapping[str, Any]]) -> tuple[Chat | None, list[HistorySegment]]:
    if not rows or rows[0]['chat_chat_id'] is None:
        return None, []
    chat = CHAT_SHAPE.of_mapping({name: rows[0][f'chat_{name}'] for name in CHAT_SHAPE.fields})
    segments = [
        SEGMENT_SHAPE.of_mapping({name: row[f'seg_{name}'] for name in SEGMENT_SHAPE.fields})
        for row in rows
        if row['seg_chat_id'] is not None
    ]
    return chat, segments


class SqlHistorySegmentRepository(HistorySegmentRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def list_by_chat_id(self, chat_id: UUID) -> list[HistorySegment]:
        return await self._session.objects(SEGMENTS_OF_CHAT, {'b_chat_id': chat_id}, SEGMENT_SHAPE)

    async def history(self, chat_id: UUID) -> tuple[Chat | None, list[HistorySegment]]:
        return _history(await self._session.rows(HISTORY, {'chat_id': chat_id}))

    async def history_of_user(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None, list[HistorySegment]]:
        rows = await self._session.rows(HISTORY_OF_USER, {'user_id': user_id, 'chat_id': chat_id})
        if not rows:
            return None, None, []
        return workspace_of(rows[0]), *_history(rows)

    async def add(self, segment: HistorySegment) -> None:
        await self._session.execute_prebuilt_write(
            SEGMENT_INSERT,
            {
                'b_chat_id': segment.chat_id,
                'b_revision': segment.revision,
                'b_size_bytes': segment.size_bytes,
                'b_blob_id': segment.blob_id,
                'b_content': segment.content,
            },
        )

    async def delete_up_to(self, chat_id: UUID, revision: int) -> None:
        await self._session.execute_write(
            delete(history_segments).where(
                history_segments.c.chat_id == chat_id,
                history_segments.c.revision <= revision,
            )
        )

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        await self._session.execute_write(
            delete(history_segments).where(history_segments.c.chat_id == chat_id)
        )

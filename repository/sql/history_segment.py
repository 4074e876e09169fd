"""The history segments of the SQL backends."""

from dataclasses import fields
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select

from domain.chat import HistorySegment
from repository.sql.read_plan import RowShape
from repository.sql.session import SqlSession
from repository.sql.tables import history_segments
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


class SqlHistorySegmentRepository(HistorySegmentRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def list_by_chat_id(self, chat_id: UUID) -> list[HistorySegment]:
        return await self._session.objects(SEGMENTS_OF_CHAT, {'b_chat_id': chat_id}, SEGMENT_SHAPE)

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

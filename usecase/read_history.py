from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from domain.chat import Chat
from domain.error import ChatNotFoundError, WorkspaceNotFoundError
from usecase.common import primed
from usecase.interface import UnitOfWorkFactory
from usecase.publish import history_chunks
from usecase.store_ports import BlobStore


@dataclass(frozen=True, slots=True)
class HistoryContent:
    chat: Chat
    chunks: AsyncIterator[bytes]


class ReadHistory:
    """The committed history of a chat, streamed: its rows, read in one statement, name
    immutable blobs and segments, so every read is of one committed version."""

    def __init__(self, uow: UnitOfWorkFactory, blobs: BlobStore) -> None:
        self._uow = uow
        self._blobs = blobs

    async def __call__(self, user_id: UUID, chat_id: UUID) -> HistoryContent:
        async with self._uow(write=False, one_statement=True) as uow:
            workspace, chat, segments = await uow.history_segments.history_of_user(user_id, chat_id)
        if workspace is None:
            raise WorkspaceNotFoundError(user_id)
        if chat is None or chat.workspace_id != workspace.workspace_id:
            raise ChatNotFoundError(chat_id)
        # opened now, so that a missing blob is an error response, not a cut body
        chunks = await primed(history_chunks(self._blobs, chat, segments))
        return HistoryContent(chat=chat, chunks=chunks)

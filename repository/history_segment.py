from uuid import UUID

from domain.chat import Chat, HistorySegment
from domain.workspace import Workspace
from repository.memory_store import MemoryRepository
from usecase.interface import HistorySegmentRepository


class InMemoryHistorySegmentRepository(MemoryRepository, HistorySegmentRepository):
    async def list_by_chat_id(self, chat_id: UUID) -> list[HistorySegment]:
        return list(self._store.history_segments.get(chat_id, ()))

    async def history(self, chat_id: UUID) -> tuple[Chat | None, list[HistorySegment]]:
        chat = self._store.chats.get(chat_id)
        return chat, [] if chat is None else await self.list_by_chat_id(chat_id)

    async def history_of_user(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None, list[HistorySegment]]:
        workspace_id = self._store.workspace_id_by_user_id.get(user_id)
        if workspace_id is None:
            return None, None, []
        chat, segments = await self.history(chat_id)
        if chat is None or chat.workspace_id != workspace_id:
            return self._store.workspaces[workspace_id], None, []
        return self._store.workspaces[workspace_id], chat, segments

    async def add(self, segment: HistorySegment) -> None:
        store = self._for_write()
        segments = store.history_segments.get(segment.chat_id, ())
        if any(existing.revision == segment.revision for existing in segments):
            # the SQL backends' primary key refuses it as well
            raise ValueError(f'chat {segment.chat_id} has a segment of revision {segment.revision}')
        store.history_segments[segment.chat_id] = tuple(
            sorted((*segments, segment), key=lambda each: each.revision)
        )

    async def delete_up_to(self, chat_id: UUID, revision: int) -> None:
        store = self._for_write()
        kept = tuple(s for s in store.history_segments.get(chat_id, ()) if s.revision > revision)
        if kept:
            store.history_segments[chat_id] = kept
        else:
            store.history_segments.pop(chat_id, None)

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        self._for_write().history_segments.pop(chat_id, None)

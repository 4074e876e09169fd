from collections.abc import Collection, Iterator
from datetime import datetime
from uuid import UUID

from domain.chat import Chat
from repository.common import check_limit
from repository.memory_store import MemoryRepository
from usecase.interface import StoreInventory


class InMemoryStoreInventory(MemoryRepository, StoreInventory):
    async def named(self, blob_ids: Collection[UUID]) -> set[UUID]:
        wanted = set(blob_ids)
        return {blob_id for blob_id in self._names(self._store.chats) if blob_id in wanted}

    async def of_chat(self, chat_id: UUID) -> list[UUID]:
        return list(set(self._names({chat_id})))

    async def of_workspace(self, workspace_id: UUID) -> list[UUID]:
        chat_ids = {c.chat_id for c in self._store.chats.values() if c.workspace_id == workspace_id}
        return list(set(self._names(chat_ids)))

    async def chats_changed_since(
        self, since: datetime, *, after: UUID | None, limit: int
    ) -> list[Chat]:
        check_limit(limit)
        changed = sorted(
            (
                chat
                for chat in self._store.chats.values()
                if chat.updated_at >= since and (after is None or chat.chat_id > after)
            ),
            key=lambda chat: chat.chat_id,
        )
        return changed[:limit]

    async def chat_file_bytes(self, chat_id: UUID) -> int:
        return sum(f.size_bytes for f in self._store.chat_files.values() if f.chat_id == chat_id)

    async def workspace_stored_bytes(self, workspace_id: UUID) -> int:
        return self._stored_bytes_by_workspace().get(workspace_id, 0)

    def _names(self, chat_ids: Collection[UUID]) -> Iterator[UUID]:
        """The blob ids the rows of these chats name (with repeats)."""
        store = self._store
        for chat_file in store.chat_files.values():
            if chat_file.chat_id in chat_ids:
                yield chat_file.file_id
        for chat_id in chat_ids:
            chat = store.chats.get(chat_id)
            if chat is not None and chat.history_blob_id is not None:
                yield chat.history_blob_id
            for segment in store.history_segments.get(chat_id, ()):
                if segment.blob_id is not None:
                    yield segment.blob_id

    def _stored_bytes_by_workspace(self) -> dict[UUID, int]:
        store = self._store
        stored: dict[UUID, int] = {}
        for chat in store.chats.values():
            stored[chat.workspace_id] = stored.get(chat.workspace_id, 0) + chat.history_bytes
        for chat_file in store.chat_files.values():
            owner = store.chats.get(chat_file.chat_id)
            if owner is not None:
                stored[owner.workspace_id] = (
                    stored.get(owner.workspace_id, 0) + chat_file.size_bytes
                )
        return stored

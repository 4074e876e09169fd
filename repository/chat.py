from collections.abc import Collection
from uuid import UUID

from domain.chat import Chat
from domain.page import PageKey
from domain.workspace import Workspace
from repository.common import keyset_page
from repository.memory_store import MemoryRepository
from usecase.interface import ChatRepository


class InMemoryChatRepository(MemoryRepository, ChatRepository):
    async def get(self, chat_id: UUID) -> Chat | None:
        return self._store.chats.get(chat_id)

    async def get_many(self, chat_ids: Collection[UUID]) -> list[Chat]:
        return [chat for chat_id in set(chat_ids) if (chat := self._store.chats.get(chat_id))]

    async def get_with_workspace(
        self, user_id: UUID, chat_id: UUID
    ) -> tuple[Workspace | None, Chat | None]:
        workspace_id = self._store.workspace_id_by_user_id.get(user_id)
        workspace = None if workspace_id is None else self._store.workspaces.get(workspace_id)
        chat = self._store.chats.get(chat_id)
        if workspace is None or chat is None or chat.workspace_id != workspace.workspace_id:
            return workspace, None
        return workspace, chat

    async def list_by_workspace_id(
        self,
        workspace_id: UUID,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Chat]:
        return keyset_page(
            (c for c in self._store.chats.values() if c.workspace_id == workspace_id),
            lambda c: (c.created_at, c.chat_id),
            limit=limit,
            after=after,
        )

    async def list_by_user_id(
        self, user_id: UUID, *, limit: int, after: PageKey | None = None
    ) -> list[Chat]:
        workspace_id = self._store.workspace_id_by_user_id.get(user_id)
        if workspace_id is None:
            return []
        return await self.list_by_workspace_id(workspace_id, limit=limit, after=after)

    async def save(self, chat: Chat) -> None:
        self._for_write().chats[chat.chat_id] = chat

    async def delete(self, chat_id: UUID) -> None:
        store = self._for_write()
        store.chats.pop(chat_id, None)
        # the segments go with their chat, as the SQL schema's ON DELETE CASCADE does
        store.history_segments.pop(chat_id, None)

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        store = self._for_write()
        for chat_id in [c.chat_id for c in store.chats.values() if c.workspace_id == workspace_id]:
            del store.chats[chat_id]
            store.history_segments.pop(chat_id, None)

from datetime import datetime
from uuid import UUID

from domain.sandbox import SandboxSession
from repository.memory_store import MemoryRepository
from usecase.interface import SandboxSessionRepository


class InMemorySandboxSessionRepository(MemoryRepository, SandboxSessionRepository):
    async def get_active_by_chat_id(self, chat_id: UUID, now: datetime) -> SandboxSession | None:
        session = self._store.sandbox_sessions.get(chat_id)
        if session is None or not session.is_active(now):
            return None
        return session

    async def exists_active_in_workspace(self, workspace_id: UUID, now: datetime) -> bool:
        chats = self._store.chats
        return any(
            session.is_active(now)
            and (chat := chats.get(session.chat_id)) is not None
            and chat.workspace_id == workspace_id
            for session in self._store.sandbox_sessions.values()
        )

    async def count_active(self, now: datetime) -> int:
        return sum(s.is_active(now) for s in self._store.sandbox_sessions.values())

    async def save(self, session: SandboxSession) -> None:
        self._for_write().sandbox_sessions[session.chat_id] = session

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        self._for_write().sandbox_sessions.pop(chat_id, None)

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        store = self._for_write()
        chat_ids = {c.chat_id for c in store.chats.values() if c.workspace_id == workspace_id}
        for chat_id in chat_ids:
            store.sandbox_sessions.pop(chat_id, None)

"""The sandbox sessions of the SQL backends."""

from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, exists, func, select
from sqlalchemy.engine import RowMapping

from domain.sandbox import SandboxSession
from repository.sql.session import SqlSession
from repository.sql.statements import chat_ids_of_workspace, upsert
from repository.sql.tables import chats, sandbox_sessions
from usecase.interface import SandboxSessionRepository


class SqlSandboxSessionRepository(SandboxSessionRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get_active_by_chat_id(self, chat_id: UUID, now: datetime) -> SandboxSession | None:
        result = await self._session.execute(
            select(sandbox_sessions).where(
                sandbox_sessions.c.chat_id == chat_id,
                sandbox_sessions.c.expires_at > now,
            )
        )
        row = result.mappings().one_or_none()
        return None if row is None else _sandbox_session(row)

    async def exists_active_in_workspace(self, workspace_id: UUID, now: datetime) -> bool:
        active = (
            exists()
            .select_from(
                sandbox_sessions.join(chats, chats.c.chat_id == sandbox_sessions.c.chat_id)
            )
            .where(chats.c.workspace_id == workspace_id, sandbox_sessions.c.expires_at > now)
        )
        result = await self._session.execute(select(active))
        return bool(result.scalar_one())

    async def count_active(self, now: datetime) -> int:
        result = await self._session.execute(
            select(func.count())
            .select_from(sandbox_sessions)
            .where(sandbox_sessions.c.expires_at > now)
        )
        return int(result.scalar_one())

    async def save(self, session: SandboxSession) -> None:
        values = {
            'chat_id': session.chat_id,
            'sandbox_session_id': session.sandbox_session_id,
            'started_at': session.started_at,
            'expires_at': session.expires_at,
        }
        await self._session.execute_write(
            upsert(self._session.dialect_name, sandbox_sessions, values, 'chat_id')
        )

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        await self._session.execute_write(
            delete(sandbox_sessions).where(sandbox_sessions.c.chat_id == chat_id)
        )

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        await self._session.execute_write(
            delete(sandbox_sessions).where(
                sandbox_sessions.c.chat_id.in_(chat_ids_of_workspace(workspace_id))
            )
        )


def _sandbox_session(row: RowMapping) -> SandboxSession:
    return SandboxSession(
        sandbox_session_id=row['sandbox_session_id'],
        chat_id=row['chat_id'],
        started_at=row['started_at'],
        expires_at=row['expires_at'],
    )

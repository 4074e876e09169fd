"""The workspaces of the SQL backends."""

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, bindparam, delete, select, update
from sqlalchemy.engine import RowMapping

from domain.page import PageKey
from domain.workspace import Workspace
from repository.sql.session import SqlSession
from repository.sql.statements import insert_ignoring_conflicts, keyset_page, upsert
from repository.sql.tables import workspaces
from usecase.interface import WorkspaceRepository


class SqlWorkspaceRepository(WorkspaceRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, workspace_id: UUID) -> Workspace | None:
        result = await self._session.execute(
            select(workspaces).where(workspaces.c.workspace_id == workspace_id)
        )
        row = result.mappings().one_or_none()
        return None if row is None else workspace_of(row)

    async def get_by_user_id(self, user_id: UUID, *, for_update: bool = False) -> Workspace | None:
        # PostgreSQL locks the row; SQLite ignores the clause, its write units already hold
        # the database's write lock (BEGIN IMMEDIATE)
        statement = WORKSPACE_BY_USER_FOR_UPDATE if for_update else WORKSPACE_BY_USER
        rows = await self._session.rows(statement, {'user_id': user_id})
        return workspace_of(rows[0]) if rows else None

    async def add(self, workspace: Workspace) -> bool:
        result = await self._session.execute_write(
            insert_ignoring_conflicts(
                self._session.dialect_name, workspaces, workspace_values(workspace)
            )
        )
        return result.rowcount == 1

    async def save(self, workspace: Workspace) -> None:
        await self._session.execute_write(
            delete(workspaces).where(
                workspaces.c.user_id == workspace.user_id,
                workspaces.c.workspace_id != workspace.workspace_id,
            )
        )
        await self._session.execute_write(
            upsert(
                self._session.dialect_name,
                workspaces,
                workspace_values(workspace),
                'workspace_id',
            )
        )

    async def add_used_bytes(self, workspace_id: UUID, delta: int) -> bool:
        # checked and applied in one statement when growing: no read-modify-write race
        statement = ADD_USED_BYTES_WITHIN_QUOTA if delta > 0 else ADD_USED_BYTES
        changed = await self._session.execute_prebuilt_write(
            statement, {'b_workspace_id': workspace_id, 'b_delta': delta}
        )
        return changed == 1

    async def delete(self, workspace_id: UUID) -> None:
        await self._session.execute_write(
            delete(workspaces).where(workspaces.c.workspace_id == workspace_id)
        )

    async def list_all(
        self,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Workspace]:
        statement = keyset_page(
            select(workspaces),
            workspaces.c.created_at,
            workspaces.c.workspace_id,
            limit=limit,
            after=after,
        )
        result = await self._session.execute(statement)
        return [workspace_of(row) for row in result.mappings()]


ADD_USED_BYTES = (
    update(workspaces)
    .where(workspaces.c.workspace_id == bindparam('b_workspace_id'))
    .values(used_bytes=workspaces.c.used_bytes + bindparam('b_delta', type_=BigInteger))
)
ADD_USED_BYTES_WITHIN_QUOTA = ADD_USED_BYTES.where(
    workspaces.c.used_bytes + bindparam('b_delta', type_=BigInteger) <= workspaces.c.quota_bytes
)


# built once: the two lookups of nearly every request (building a statement costs more
# than running it on SQLite; ADR 019)
WORKSPACE_BY_USER = select(workspaces).where(workspaces.c.user_id == bindparam('user_id'))
WORKSPACE_BY_USER_FOR_UPDATE = WORKSPACE_BY_USER.with_for_update()


def workspace_values(workspace: Workspace) -> dict[str, object]:
    return {
        'workspace_id': workspace.workspace_id,
        'user_id': workspace.user_id,
        'created_at': workspace.created_at,
        'quota_bytes': workspace.quota_bytes,
        'used_bytes': workspace.used_bytes,
    }


def workspace_of(row: RowMapping | Mapping[str, Any]) -> Workspace:
    return Workspace(
        workspace_id=row['workspace_id'],
        user_id=row['user_id'],
        created_at=row['created_at'],
        quota_bytes=row['quota_bytes'],
        used_bytes=row['used_bytes'],
    )

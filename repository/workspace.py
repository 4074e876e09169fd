from dataclasses import replace
from uuid import UUID

from domain.page import PageKey
from domain.workspace import Workspace
from repository.common import keyset_page
from repository.memory_store import MemoryRepository
from usecase.interface import WorkspaceRepository


class InMemoryWorkspaceRepository(MemoryRepository, WorkspaceRepository):
    async def get(self, workspace_id: UUID) -> Workspace | None:
        return self._store.workspaces.get(workspace_id)

    async def get_by_user_id(self, user_id: UUID, *, for_update: bool = False) -> Workspace | None:
        # for_update needs nothing here: a write unit of work holds the store's writer lock
        del for_update
        workspace_id = self._store.workspace_id_by_user_id.get(user_id)
        if workspace_id is None:
            return None
        return self._store.workspaces.get(workspace_id)

    async def add(self, workspace: Workspace) -> bool:
        store = self._for_write()
        if (
            workspace.user_id in store.workspace_id_by_user_id
            or workspace.workspace_id in store.workspaces
        ):
            return False
        store.workspaces[workspace.workspace_id] = workspace
        store.workspace_id_by_user_id[workspace.user_id] = workspace.workspace_id
        return True

    async def save(self, workspace: Workspace) -> None:
        store = self._for_write()
        existing_id = store.workspace_id_by_user_id.get(workspace.user_id)
        if existing_id is not None and existing_id != workspace.workspace_id:
            store.workspaces.pop(existing_id, None)
        previous = store.workspaces.get(workspace.workspace_id)
        if previous is not None and previous.user_id != workspace.user_id:
            store.workspace_id_by_user_id.pop(previous.user_id, None)
        store.workspaces[workspace.workspace_id] = workspace
        store.workspace_id_by_user_id[workspace.user_id] = workspace.workspace_id

    async def add_used_bytes(self, workspace_id: UUID, delta: int) -> bool:
        store = self._for_write()
        workspace = store.workspaces.get(workspace_id)
        if workspace is None:
            return False
        used_bytes = workspace.used_bytes + delta
        if delta > 0 and used_bytes > workspace.quota_bytes:
            return False
        store.workspaces[workspace_id] = replace(workspace, used_bytes=used_bytes)
        return True

    async def delete(self, workspace_id: UUID) -> None:
        store = self._for_write()
        workspace = store.workspaces.pop(workspace_id, None)
        if workspace is not None and store.workspace_id_by_user_id.get(workspace.user_id) == (
            workspace_id
        ):
            del store.workspace_id_by_user_id[workspace.user_id]

    async def list_all(
        self,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[Workspace]:
        return keyset_page(
            self._store.workspaces.values(),
            lambda w: (w.created_at, w.workspace_id),
            limit=limit,
            after=after,
        )

from uuid import UUID

from domain.workspace import Workspace, WorkspaceUsage
from usecase.common import owned_workspace
from usecase.interface import UnitOfWorkFactory


class GetWorkspace:
    """The caller's workspace, or `WorkspaceNotFoundError`."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: UUID) -> Workspace:
        async with self._uow(write=False) as uow:
            return await owned_workspace(uow, user_id)


class GetWorkspaceUsage:
    """Used and allowed bytes of the caller's workspace, read from metadata (no disk walk)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: UUID) -> WorkspaceUsage:
        async with self._uow(write=False) as uow:
            return (await owned_workspace(uow, user_id)).usage

from dataclasses import dataclass
from uuid import UUID

from domain.workspace import Workspace
from usecase.interface import Clock, IdGenerator, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class EnsuredWorkspace:
    workspace: Workspace
    created: bool


class EnsureWorkspace:
    """Create the caller's workspace unless it exists (idempotent)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        ids: IdGenerator,
        default_quota_bytes: int,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._default_quota_bytes = default_quota_bytes

    async def __call__(self, user_id: UUID) -> EnsuredWorkspace:
        async with self._uow() as uow:
            existing = await uow.workspaces.get_by_user_id(user_id)
            if existing is not None:
                return EnsuredWorkspace(existing, created=False)
            workspace = Workspace(
                workspace_id=self._ids.new(),
                user_id=user_id,
                created_at=self._clock.now(),
                quota_bytes=self._default_quota_bytes,
            )
            created = await uow.workspaces.add(workspace)
            if created:
                await uow.commit()
                return EnsuredWorkspace(workspace, created=True)
        # another request created it between our read and our insert
        async with self._uow(write=False) as uow:
            current = await uow.workspaces.get_by_user_id(user_id)
        if current is None:  # pragma: no cover - deleted again in between
            return await self(user_id)
        return EnsuredWorkspace(current, created=False)

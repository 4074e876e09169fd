from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class WorkspaceUsage:
    workspace_id: UUID
    used_bytes: int
    quota_bytes: int

    @property
    def remaining_bytes(self) -> int:
        return max(0, self.quota_bytes - self.used_bytes)


@dataclass(frozen=True, slots=True)
class Workspace:
    workspace_id: UUID
    user_id: UUID
    created_at: datetime
    quota_bytes: int
    used_bytes: int = 0

    @property
    def usage(self) -> WorkspaceUsage:
        return WorkspaceUsage(
            workspace_id=self.workspace_id,
            used_bytes=self.used_bytes,
            quota_bytes=self.quota_bytes,
        )

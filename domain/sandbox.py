from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

MIN_SANDBOX_TTL_SECONDS = 1
MAX_SANDBOX_TTL_SECONDS = 86_400
DEFAULT_SANDBOX_TTL_SECONDS = 3_600


@dataclass(frozen=True, slots=True)
class SandboxSession:
    sandbox_session_id: UUID
    chat_id: UUID
    started_at: datetime
    expires_at: datetime

    def is_active(self, now: datetime) -> bool:
        return now < self.expires_at

"""What an `Idempotency-Key` remembers: the request's fingerprint and the answer given."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

MAX_IDEMPOTENCY_KEY_CHARS = 255
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)


# 1-255 characters, none of them a control character (C0, DEL, C1: Unicode category Cc)
IDEMPOTENCY_KEY_PATTERN = r'^[^\x00-\x1f\x7f-\x9f]+$'


def fingerprint_with_content(fingerprint: str, content_sha256: str) -> str:
    """A request fingerprint that also covers a streamed body, known only once it is read."""
    return hashlib.sha256(f'{fingerprint}:{content_sha256}'.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    """The answer a create gave, kept verbatim so that a retry gets the same answer.

    The web layer renders it and replays it; below the web layer it is opaque data.
    """

    status_code: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A user's key, the fingerprint of the request first sent with it, and the answer."""

    user_id: UUID
    key: str
    request_hash: str
    response: RecordedResponse
    created_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return self.created_at <= expiry_cutoff(now)


def expiry_cutoff(now: datetime) -> datetime:
    """Records created at or before this instant are expired at `now`."""
    return now - IDEMPOTENCY_KEY_LIFETIME

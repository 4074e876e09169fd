"""Idempotent creates (ADR 015): replay a recorded answer, or record one with the create.

A create sent with an `Idempotency-Key` records its answer in the same unit of work that
commits the create, so neither exists without the other. A retry with the same key and
the same request gets the recorded answer and changes nothing; the same key with another
request is `IdempotencyKeyReusedError`.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

from domain.error import IdempotencyKeyReusedError, ServiceUnavailableError
from domain.idempotency import (
    IdempotencyRecord,
    RecordedResponse,
    expiry_cutoff,
    fingerprint_with_content,
)
from usecase.interface import ByteStream, UnitOfWork, UnitOfWorkFactory

T = TypeVar('T')

# expired records deleted on the way by each recording create: enough to keep pace with
# the creates themselves, small enough never to slow one down noticeably
EXPIRED_BATCH = 100


@dataclass(frozen=True, slots=True)
class IdempotencyRequest(Generic[T]):
    """A create sent with an `Idempotency-Key`.

    `fingerprint` identifies the request as the web layer saw it (method, route, path
    parameters, body); a use case that streams a body mixes in the body's sha256.
    `response_of` renders the answer to record with the create.
    """

    key: str
    fingerprint: str
    response_of: Callable[[T], RecordedResponse]


class IdempotencyKeyTakenError(Exception):
    """A concurrent request recorded the key first; the unit of work must roll back."""

    def __init__(self, key: str, fingerprint: str) -> None:
        super().__init__('idempotency key taken')
        self.key = key
        self.fingerprint = fingerprint


async def live_record(
    uow: UnitOfWork, user_id: UUID, key: str, now: datetime
) -> IdempotencyRecord | None:
    """The user's unexpired record of `key`; an expired one counts as absent."""
    record = await uow.idempotency_keys.get(user_id, key)
    if record is None or record.is_expired(now):
        return None
    return record


def replay(record: IdempotencyRecord, fingerprint: str) -> RecordedResponse:
    """The recorded answer when the request is the same, else `IdempotencyKeyReusedError`."""
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReusedError(record.key)
    return record.response


async def record_response(
    uow: UnitOfWork,
    *,
    user_id: UUID,
    request: IdempotencyRequest[T],
    fingerprint: str,
    result: T,
    now: datetime,
) -> RecordedResponse:
    """Record the answer to `result` in this unit of work; `IdempotencyKeyTakenError` on a race.

    Deletes a bounded batch of expired records on the way.
    """
    response = request.response_of(result)
    cutoff = expiry_cutoff(now)
    await uow.idempotency_keys.delete_expired(cutoff, limit=EXPIRED_BATCH)
    record = IdempotencyRecord(
        user_id=user_id,
        key=request.key,
        request_hash=fingerprint,
        response=response,
        created_at=now,
    )
    if not await uow.idempotency_keys.add(record, expiry_cutoff=cutoff):
        raise IdempotencyKeyTakenError(request.key, fingerprint)
    return response


async def replay_under_lock(
    uow: UnitOfWork,
    user_id: UUID,
    request: IdempotencyRequest[T],
    content_sha256: str,
    now: datetime,
) -> tuple[str, RecordedResponse | None]:
    """The fingerprint of a staged write, and the recorded answer when its key has one.

    Called under the workspace lock that every write takes: a concurrent first request
    with the same key has committed by then.
    """
    fingerprint = fingerprint_with_content(request.fingerprint, content_sha256)
    earlier = await live_record(uow, user_id, request.key, now)
    return fingerprint, None if earlier is None else replay(earlier, fingerprint)


async def answer_after_race(
    uow_factory: UnitOfWorkFactory,
    taken: IdempotencyKeyTakenError,
    *,
    user_id: UUID,
    now: datetime,
) -> RecordedResponse:
    """The answer of the request that won the key, after this one rolled back."""
    async with uow_factory(write=False) as uow:
        record = await live_record(uow, user_id, taken.key, now)
    if record is None:
        # the winner's record vanished (expired or cleaned) in between: retrying is safe
        raise ServiceUnavailableError
    return replay(record, taken.fingerprint)


async def content_sha256(content: ByteStream, *, limit_bytes: int) -> str | None:
    """The sha256 of a stream read through without keeping it; None past `limit_bytes`.

    Stops reading as soon as the limit is crossed: such a body cannot be the one that
    was accepted before.
    """
    digest = hashlib.sha256()
    size = 0
    async for chunk in content:
        size += len(chunk)
        if size > limit_bytes:
            return None
        digest.update(chunk)
    return digest.hexdigest()


async def replay_unstaged(
    earlier: IdempotencyRecord,
    request: IdempotencyRequest[T],
    content: ByteStream,
    declared_size: int | None,
    max_bytes: int,
) -> RecordedResponse:
    """The recorded answer if this streamed body is the recorded one; the body is only
    hashed, never staged."""
    # a body over the size limit was never accepted, so it is another request
    too_large = declared_size is not None and declared_size > max_bytes
    digest = None if too_large else await content_sha256(content, limit_bytes=max_bytes)
    if digest is None:
        raise IdempotencyKeyReusedError(request.key)
    return replay(earlier, fingerprint_with_content(request.fingerprint, digest))

from datetime import datetime
from uuid import UUID

from domain.idempotency import IdempotencyRecord
from repository.memory_store import MemoryRepository
from usecase.interface import IdempotencyKeyRepository


class InMemoryIdempotencyKeyRepository(MemoryRepository, IdempotencyKeyRepository):
    async def get(self, user_id: UUID, key: str) -> IdempotencyRecord | None:
        return self._store.idempotency_keys.get((user_id, key))

    async def add(self, record: IdempotencyRecord, *, expiry_cutoff: datetime) -> bool:
        store = self._for_write()
        existing = store.idempotency_keys.get((record.user_id, record.key))
        if existing is not None and existing.created_at > expiry_cutoff:
            return False
        store.idempotency_keys[record.user_id, record.key] = record
        return True

    async def delete_expired(self, expiry_cutoff: datetime, *, limit: int) -> int:
        store = self._for_write()
        expired = sorted(
            (r for r in store.idempotency_keys.values() if r.created_at <= expiry_cutoff),
            key=lambda r: r.created_at,
        )[:limit]
        for record in expired:
            del store.idempotency_keys[record.user_id, record.key]
        return len(expired)

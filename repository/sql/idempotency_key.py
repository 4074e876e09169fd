"""The `Idempotency-Key` records of the SQL backends (ADR 015)."""

import json
from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, select, tuple_
from sqlalchemy.engine import RowMapping

from domain.idempotency import IdempotencyRecord, RecordedResponse
from repository.sql.session import SqlSession
from repository.sql.statements import insert_ignoring_conflicts
from repository.sql.tables import idempotency_keys
from usecase.interface import IdempotencyKeyRepository


class SqlIdempotencyKeyRepository(IdempotencyKeyRepository):
    def __init__(self, session: SqlSession) -> None:
        self._session = session

    async def get(self, user_id: UUID, key: str) -> IdempotencyRecord | None:
        result = await self._session.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key
            )
        )
        row = result.mappings().one_or_none()
        return None if row is None else _idempotency_record(row)

    async def add(self, record: IdempotencyRecord, *, expiry_cutoff: datetime) -> bool:
        await self._session.execute_write(
            delete(idempotency_keys).where(
                idempotency_keys.c.user_id == record.user_id,
                idempotency_keys.c.key == record.key,
                idempotency_keys.c.created_at <= expiry_cutoff,
            )
        )
        response = record.response
        values = {
            'user_id': record.user_id,
            'key': record.key,
            'request_hash': record.request_hash,
            'status_code': response.status_code,
            'response_body': response.body,
            'headers': json.dumps([list(pair) for pair in response.headers]),
            'created_at': record.created_at,
        }
        # a concurrent insert of the same key makes PostgreSQL wait for its transaction:
        # committed, this one inserts nothing; rolled back, this one inserts
        result = await self._session.execute_write(
            insert_ignoring_conflicts(self._session.dialect_name, idempotency_keys, values)
        )
        return result.rowcount == 1

    async def delete_expired(self, expiry_cutoff: datetime, *, limit: int) -> int:
        batch = (
            select(idempotency_keys.c.user_id, idempotency_keys.c.key)
            .where(idempotency_keys.c.created_at <= expiry_cutoff)
            .order_by(idempotency_keys.c.created_at)
            .limit(limit)
            # concurrent cleaners take disjoint batches instead of waiting or deadlocking
            # (PostgreSQL; SQLite writers are serialised and ignore the clause)
            .with_for_update(skip_locked=True)
        )
        result = await self._session.execute_write(
            delete(idempotency_keys).where(
                tuple_(idempotency_keys.c.user_id, idempotency_keys.c.key).in_(batch)
            )
        )
        return int(result.rowcount)


def _idempotency_record(row: RowMapping) -> IdempotencyRecord:
    headers = json.loads(row['headers']) if row['headers'] else []
    return IdempotencyRecord(
        user_id=row['user_id'],
        key=row['key'],
        request_hash=row['request_hash'],
        response=RecordedResponse(
            status_code=row['status_code'],
            body=row['response_body'] or '',
            headers=tuple((str(name), str(value)) for name, value in headers),
        ),
        created_at=row['created_at'],
    )

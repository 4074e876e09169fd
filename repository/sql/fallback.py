"""The SQLAlchemy connection that an autocommit read unit opens only when it needs one.

SQLite's and PostgreSQL's one-statement read units run their prebuilt `SELECT` on a
driver connection of their own (`loop_sqlite.AutocommitReadConnection`,
`asyncpg_reads.AsyncpgAutocommitConnection`). A statement built per call goes through
SQLAlchemy instead, on a connection opened then; this is how the unit ends it.
"""

from typing import Protocol


class EndableConnection(Protocol):
    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def close(self) -> None: ...

    async def invalidate(self) -> None: ...


class SqlAlchemyFallback:
    """Ends the unit's SQLAlchemy connection, if it opened one (`_sqlalchemy`)."""

    _sqlalchemy: EndableConnection | None = None

    async def commit(self) -> None:
        """Autocommit: every statement has committed (SQLAlchemy's, if any, likewise)."""
        if self._sqlalchemy is not None:
            await self._sqlalchemy.commit()

    async def rollback(self) -> None:
        if self._sqlalchemy is not None:
            await self._sqlalchemy.rollback()

    async def _close_fallback(self) -> None:
        sqlalchemy, self._sqlalchemy = self._sqlalchemy, None
        if sqlalchemy is not None:
            await sqlalchemy.close()

    async def _invalidate_fallback(self) -> None:
        if self._sqlalchemy is not None:
            await self._sqlalchemy.invalidate()

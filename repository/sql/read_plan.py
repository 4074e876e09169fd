"""Prebuilt statements compiled once and run on the DB-API connection (ADR 019).

SQLAlchemy's execution path (execution context, result metadata, row objects, and on
asyncio a greenlet switch) costs more than a lookup by key on a local SQLite file or a
warm PostgreSQL. A statement built once as a module constant is compiled once here into
its SQL, its bind processors in order and its result processors, and its rows come back
as the mappings `execute(...).mappings().all()` gives (`test_loop_sqlite`,
`test_asyncpg_reads` hold them equal). A prebuilt write (`WritePlan`) is compiled once
likewise, and SQLite's units of work run it on the DB-API cursor for its row count.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Self, TypeVar, cast
from uuid import UUID, SafeUUID

from sqlalchemy import Executable, Select, Uuid
from sqlalchemy.engine import Dialect, RowMapping
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeEngine

from repository.sql.types import UtcDateTime, utc_of_text

T = TypeVar('T')

# plans of prebuilt statements, of each kind; more than this many distinct statements means
# statements built per call, which are compiled per call instead of kept
_MAX_PLANS = 64
_UUID_HEX_DIGITS = 32


@dataclass(frozen=True, slots=True)
class RowShape(Generic[T]):
    """How a row becomes an object: `build` called with the values of `fields`, in order.

    Rows of a list page become objects without a dict for each (ADR 019).
    """

    build: Callable[..., T]
    fields: tuple[str, ...]

    def of_mapping(self, row: Mapping[str, Any] | RowMapping) -> T:
        return self.build(*[row[field] for field in self.fields])


class _BoundPlan:
    """A prebuilt statement compiled once for the DB-API: its SQL and how to bind its
    parameters in order."""

    # each kind's plans by dialect name and statement: a plan is compiled for one dialect
    _plans: ClassVar[dict[tuple[str, Executable], Any]]

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> Self | None:
        """The plan, or None for a statement the DB-API cannot take as compiled
        (rendered at execution: an expanding IN, a literal LIMIT; or unnamed columns)."""
        key = (dialect.name, statement)
        plans = cls._plans
        if key in plans:
            plan: Self | None = plans[key]
            return plan
        built = cls(statement, dialect)
        plan = built if built.usable else None
        if len(plans) < _MAX_PLANS:
            plans[key] = plan
        return plan

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast('SQLCompiler', cast('ClauseElement', statement).compile(dialect=dialect))
        self.sql = compiled.string
        self._compiled = compiled
        names = compiled.positiontup or []
        self._binds = [(name, compiled.binds[name].type.bind_processor(dialect)) for name in names]
        # rendered at execution (an expanding IN, a literal LIMIT): not for the DB-API
        self.usable = '__[POSTCOMPILE' not in self.sql

    def arguments(self, parameters: Mapping[str, Any] | None) -> list[Any]:
        values = self._compiled.construct_params(parameters)
        return [
            value if processor is None else processor(value)
            for name, processor in self._binds
            for value in (values[name],)
        ]


class WritePlan(_BoundPlan):
    """A prebuilt `INSERT`, `UPDATE` or `DELETE` compiled once for the DB-API.

    SQLAlchemy's `Connection.execute` builds an execution context and a result for each
    statement; a unit of work's writes need only the statement run and its row count.
    The tables have no Python-side defaults or `onupdate`s that the execution context
    would fill in (`tables.py`), so the compiled statement is all there is to run.
    """

    _plans: ClassVar[dict[tuple[str, Executable], Any]] = {}


class ReadPlan(_BoundPlan):
    """A prebuilt `SELECT` compiled once for the DB-API: its SQL, how to bind its
    parameters in order and how to turn a row into a mapping of the values SQLAlchemy
    would give (UUIDs, timestamps, ...)."""

    _plans: ClassVar[dict[tuple[str, Executable], Any]] = {}

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        super().__init__(statement, dialect)
        columns = list(cast('Select[Any]', statement).selected_columns)
        self._keys = [column.key or '' for column in columns]
        # where UUIDs are stored as 32 hex digits (SQLite), rows of a page repeat many of
        # them (the workspace's id): each distinct one is read once per call (`mappings`)
        self._uuid_columns = [
            index
            for index, column in enumerate(columns)
            if isinstance(column.type, Uuid)
            and column.type.as_uuid
            and not dialect.supports_native_uuid
        ]
        # every column named, each name once: otherwise SQLAlchemy's own mapping is used
        self.usable = self.usable and len(set(self._keys) - {''}) == len(columns)
        self._processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if index not in self._uuid_columns
            and (processor := _result_processor(column.type, dialect)) is not None
        ]
        # column positions by the fields of a `RowShape`
        self._orders: dict[tuple[str, ...], list[int]] = {}

    def mappings(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        keys = self._keys
        return [dict(zip(keys, values, strict=True)) for values in self._values(rows)]

    def objects(self, rows: Sequence[Sequence[Any]], shape: RowShape[T]) -> list[T]:
        """`shape.of_mapping` of each of `mappings(rows)`, without building the mappings."""
        order = self._orders.get(shape.fields)
        if order is None:
            order = self._orders[shape.fields] = [self._keys.index(f) for f in shape.fields]
        build = shape.build
        return [build(*[values[index] for index in order]) for values in self._values(rows)]

    def _values(self, rows: Sequence[Sequence[Any]]) -> Iterator[list[Any]]:
        """Each row's values as SQLAlchemy converts them."""
        uuids: dict[str, UUID] = {}
        for row in rows:
            values = list(row)
            for index in self._uuid_columns:
                text = values[index]
                if text is not None:
                    value = uuids.get(text)
                    if value is None:
                        value = uuids[text] = uuid_of_hex(text)
                    values[index] = value
            for index, processor in self._processors:
                values[index] = processor(values[index])
            yield values


def _result_processor(
    column_type: TypeEngine[Any], dialect: Dialect
) -> Callable[[Any], Any] | None:
    """The column type's result processor; for a timestamp stored as text (SQLite), the
    conversion itself rather than `TypeDecorator`'s generic wrapper around it."""
    if isinstance(column_type, UtcDateTime) and dialect.name == 'sqlite':
        return _utc_of_sqlite_text
    processor: Callable[[Any], Any] | None = column_type.result_processor(dialect, None)
    return processor


def _utc_of_sqlite_text(value: str | None) -> datetime | None:
    """`UtcDateTime.process_result_value` for SQLite's text, without its type checks."""
    return None if value is None else utc_of_text(value)


def uuid_of_hex(text: str) -> UUID:
    """`UUID(text)` for the 32 hex digits SQLite holds, at half the cost: the value is
    set as `UUID.__init__` would set it, without parsing the other spellings."""
    # ASCII letters and digits only: `int` alone would also take a sign, `_`, spaces and
    # other scripts' digits (checked in C, twice as fast as a regular expression)
    if len(text) == _UUID_HEX_DIGITS and text.isascii() and text.isalnum():
        try:
            number = int(text, 16)
        except ValueError:  # a letter past f
            pass
        else:
            value = object.__new__(UUID)
            object.__setattr__(value, 'int', number)
            object.__setattr__(value, 'is_safe', SafeUUID.unknown)
            return value
    return UUID(text)  # raises as SQLAlchemy's own conversion would

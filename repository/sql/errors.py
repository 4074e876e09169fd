"""Which driver errors mean 'the store cannot be reached now', and their translation."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

from domain.error import ServiceUnavailableError

# SQLSTATE classes and codes after which retrying the whole unit of work is safe:
# connection exception, insufficient resources, operator intervention (query canceled
# by statement_timeout, admin shutdown, cannot connect now), lock not available,
# serialization failure and deadlock.
_RETRYABLE_SQLSTATE_CLASSES = ('08', '53', '57')
_RETRYABLE_SQLSTATES = frozenset({'55P03', '40001', '40P01'})


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says the metadata store is unreachable, overloaded or timed out."""
    if isinstance(error, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        return _is_unavailable_driver_error(error.orig)
    if isinstance(error, sa_exc.SQLAlchemyError):
        return False
    return _is_unavailable_driver_error(error)


def _is_unavailable_driver_error(error: BaseException | None) -> bool:
    if error is None:
        return False
    if isinstance(error, OSError | TimeoutError):
        return True
    sqlstate = getattr(error, 'sqlstate', None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_RETRYABLE_SQLSTATE_CLASSES) or sqlstate in _RETRYABLE_SQLSTATES
    # asyncpg's connection-level errors (ConnectionDoesNotExistError, ...), its
    # InterfaceError for a connection closed under it (other InterfaceErrors are misuse)
    # and its InternalClientError for a protocol a lost connection left mid-exchange
    module = type(error).__module__
    if not module.startswith('asyncpg'):
        return False
    name = type(error).__name__
    if name == 'InternalClientError':
        return str(error).startswith(_ASYNCPG_BROKEN_PROTOCOL)
    return 'Connection' in name or str(error) == _ASYNCPG_CLOSED


_ASYNCPG_CLOSED = 'connection is closed'  # asyncpg.exceptions.InterfaceError's message
# asyncpg.exceptions.InternalClientError's messages for a connection whose protocol
# cannot run a statement: the server's last words (the FATAL it sends before it closes
# the connection: an admin's pg_terminate_backend, a shutdown) arrived while no
# statement ran, and the connection is not yet seen closed. 'another operation (2) is in
# progress' names that state; asyncpg aborts the connection with the error, so the next
# unit gets another. Other InternalClientErrors are asyncpg's own bugs or misuse.
_ASYNCPG_BROKEN_PROTOCOL = (
    'cannot switch to state ',
    'cannot process message ',
    'not connected',
)


# SQLSTATE classes of an answer to `COMMIT` that says it rolled back: transaction
# rollback (serialization failure, deadlock), insufficient resources, lock not available
_ROLLED_BACK_SQLSTATE_CLASSES = ('40', '53', '55')


def commit_in_doubt(error: BaseException) -> bool:
    """Whether a failed `COMMIT` may have committed: the connection went away before the
    server's answer came back (any unavailability but an answer that it rolled back)."""
    if not is_unavailable(error):
        return False
    sqlstate = getattr(error, 'sqlstate', None)
    return not (isinstance(sqlstate, str) and sqlstate.startswith(_ROLLED_BACK_SQLSTATE_CLASSES))


@contextmanager
def unavailable_on_connection_errors() -> Iterator[None]:
    """Re-raise connection failures as `ServiceUnavailableError`, dropping the original.

    `from None` keeps driver messages, which may name the host or the DSN, out of the
    traceback and the logs; the error's `reason` keeps what an operator needs in a few
    words of our own (`unavailable_reason`).
    """
    try:
        yield
    except Exception as error:
        if is_unavailable(error):
            raise ServiceUnavailableError(unavailable_reason(error)) from None
        raise


# SQLSTATE classes of a server that refused us at log-in: invalid authorization
# (no such role, a wrong password, no pg_hba.conf entry) and invalid catalog name (no
# such database). Its message names the role or database, never a password.
_REFUSED_SQLSTATE_CLASSES = ('28', '3D')


def unavailable_reason(error: BaseException) -> str:
    """Why the store could not be used, in a few words that hold no secret: our own
    words for a socket's failure, the server's or SQLite's message otherwise (neither
    sees the DSN's password)."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(orig, socket.gaierror):
        return f'host name not resolved ({orig.strerror})'
    if isinstance(orig, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(orig, TimeoutError | sa_exc.TimeoutError):
        return 'timed out'
    if isinstance(orig, OSError) and orig.strerror:
        return orig.strerror
    # asyncpg's and sqlite3's messages name the address or the file at most
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else ''
    return message or type(orig).__name__


def refused_reason(error: BaseException) -> str | None:
    """The server's message when it refused the log-in itself (no such role or
    database, a wrong password), else None."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    sqlstate = getattr(orig, 'sqlstate', None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_REFUSED_SQLSTATE_CLASSES):
        return unavailable_reason(error)
    return None

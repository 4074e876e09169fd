"""What `chat-storage serve` does once before its workers start, in a short-lived child."""

import asyncio
import errno
import importlib
import ipaddress
import socket
import tempfile
from pathlib import Path

from api.settings import ENV_PREFIX, TRACING_PACKAGES_MISSING, Settings, metadata_config
from domain.error import ServiceUnavailableError
from repository.factory import create_metadata_backend
from repository.sql.dsn import parse_postgres_dsn


def migrate_ahead(settings: Settings) -> str | None:
    """Bring the schema to head before the workers start, so that none of them imports
    Alembic (ADR 019); or, when the metadata store cannot be used, one line saying why,
    naming the variable that points at it.

    A store that cannot be reached, or refuses the log-in, stops start-up here before
    the server listens: every worker's start would fail on it with a traceback (found in
    review). The reason is in our words or the server's, never the DSN or its password.
    """

    async def migrate() -> None:
        backend = create_metadata_backend(metadata_config(settings))
        try:
            await backend.connect()
            await backend.migrate()
        finally:
            await backend.close()

    try:
        asyncio.run(migrate())
    except ServiceUnavailableError as error:
        reason = error.reason or 'unavailable'
        if settings.metadata_backend == 'postgres' and settings.postgres_dsn is not None:
            address = parse_postgres_dsn(settings.postgres_dsn.get_secret_value()).address
            return f'{ENV_PREFIX}POSTGRES_DSN: PostgreSQL at {address} cannot be used: {reason}'
        path = settings.resolved_sqlite_path
        return f'{ENV_PREFIX}SQLITE_PATH: SQLite file {path} cannot be used: {reason}'
    return None


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the data directory cannot be used (made, or written in), or None.

    Checked before the server starts, so that a wrong `STORAGE_DATA_DIR` is one clear line
    rather than every worker's traceback. A full disk is not refused: the service starts,
    serves reads, and `/readyz` says it cannot write (api-notes).
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir, prefix='.start-probe-'):
            pass
    except OSError as error:
        if error.errno in {errno.ENOSPC, errno.EDQUOT}:
            return None
        return f'{data_dir} cannot be used: {error.strerror or error}'
    return None


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on `host:port` (in use, not an address of this
    machine, a privileged port), in one line naming the variable, or None.

    Checked before the server starts: otherwise a port in use is Granian's Python and
    Rust traceback of 71 lines. The probe binds as servers do, with
    SO_REUSEADDR, so a connection of an earlier run in TIME_WAIT is no problem.
    """
    version = ipaddress.ip_address(host).version
    family = socket.AF_INET6 if version == 6 else socket.AF_INET  # noqa: PLR2004
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            variable = 'HOST' if error.errno == errno.EADDRNOTAVAIL else 'PORT'
            where = f'[{host}]:{port}' if version == 6 else f'{host}:{port}'  # noqa: PLR2004
            return f'{ENV_PREFIX}{variable}: cannot listen on {where}: {error.strerror or error}'
    return None


# what `adapter.otel_tracing.otlp_tracer()` imports
_TRACING_MODULES = ('adapter.otel_tracing', 'opentelemetry.exporter.otlp.proto.http.trace_exporter')


def tracing_problem(settings: Settings) -> str | None:
    """`TRACING_PACKAGES_MISSING` when tracing is on and its packages cannot be imported,
    else None. Asked before the server starts: otherwise only the worker finds out, after
    Granian listened and before it logs the worker's unexpected exit."""
    if settings.tracing == 'off':
        return None
    try:
        for module in _TRACING_MODULES:
            importlib.import_module(module)
    except ImportError:
        return TRACING_PACKAGES_MISSING
    return None

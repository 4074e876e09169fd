"""`chat-storage` command line: `serve` (the default) starts the HTTP server; `fsck`
checks the data directory against the metadata."""

import argparse
import json
import os
import sys
import traceback
from typing import Any

from api.logs import logging_config
from api.server import DEFAULT_APP, SERVER_ENV, SERVERS, ServerOptions, default_server, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='chat-storage', description=__doc__)
    commands = parser.add_subparsers(dest='command')
    serve = commands.add_parser('serve', help='run the HTTP server (STORAGE_HOST:STORAGE_PORT)')
    serve.add_argument('--workers', type=int, default=1, help='worker processes')
    serve.add_argument(
        '--server',
        choices=SERVERS,
        # read only when serving: fsck needs no server, so a bad $CHAT_STORAGE_SERVER
        # must not refuse `chat-storage fsck`
        default=None,
        help=f'HTTP server (default: ${SERVER_ENV}, else granian)',
    )
    serve.add_argument(
        '--app', default=DEFAULT_APP, help='module:factory of the ASGI app (default: %(default)s)'
    )
    fsck = commands.add_parser('fsck', help='check the data directory against the metadata')
    fsck.add_argument('--repair', action='store_true', help='fix what needs no guess')
    args = parser.parse_args(argv)
    if args.command == 'fsck':
        # imported here: the serving process of a multi-process server stays small
        from api.fsck_cli import run_fsck  # noqa: PLC0415
        from api.settings import SettingsError, load_settings  # noqa: PLC0415

        try:
            settings = load_settings()
        except SettingsError as error:
            print(f'chat-storage: {error}', file=sys.stderr)  # noqa: T201 - the one clear line
            return 2
        return run_fsck(settings, repair=args.repair)
    # `chat-storage` alone serves with the defaults
    server = getattr(args, 'server', None) or default_server()
    code, serving = _prepare_in_child()
    if serving is None:
        return code
    run(
        server,
        ServerOptions(
            app=getattr(args, 'app', DEFAULT_APP),
            host=serving['host'],
            port=serving['port'],
            workers=getattr(args, 'workers', 1),
            log_level=serving['log_level'],
            # JSON lines in every worker; our middleware writes the access log
            log_config=logging_config(serving['log_level'], serving['log_format']),
        ),
    )
    return 0


def _prepare_in_child() -> tuple[int, dict[str, Any] | None]:
    """Check the settings (and migrate the schema) in a forked child: its exit code, and
    what the server needs of the settings when they are valid.

    The serving process lives as long as the server and, under Granian, only supervises
    its workers: validating the settings would import pydantic (~20 MB), migrating would
    import SQLAlchemy and Alembic. A child that exits gives all of that back (ADR 019).
    """
    read_end, write_end = os.pipe()
    # the child must not write out again what this process has buffered
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - measured in the parent through the exit code
        os.close(read_end)
        code = 1
        try:
            code = _prepare(write_end)
        except BaseException:  # noqa: BLE001 - reported here, the exit code says it failed
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as pipe:
        answer = pipe.read()
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if code != 0:
        return code, None
    return 0, dict(json.loads(answer))


def _prepare(answer_fd: int) -> int:
    """In the child: validate the settings, migrate ahead of the workers, answer."""
    from api.prepare import (  # noqa: PLC0415 - the child's
        data_dir_problem,
        listen_problem,
        migrate_ahead,
        tracing_problem,
    )
    from api.settings import ENV_PREFIX, SettingsError, load_settings  # noqa: PLC0415

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f'chat-storage: {error}', file=sys.stderr)  # noqa: T201 - the one clear line
        return 2
    problem = data_dir_problem(settings.data_dir)
    if problem is not None:
        line = f'chat-storage: invalid configuration: {ENV_PREFIX}DATA_DIR: {problem}'
        print(line, file=sys.stderr)  # noqa: T201 - the one clear line
        return 2
    problem = tracing_problem(settings)
    if problem is not None:
        print(f'chat-storage: invalid configuration: {problem}', file=sys.stderr)  # noqa: T201
        return 2
    problem = listen_problem(settings.host, settings.port)
    if problem is not None:
        print(f'chat-storage: invalid configuration: {problem}', file=sys.stderr)  # noqa: T201
        return 2
    problem = migrate_ahead(settings)
    if problem is not None:
        print(f'chat-storage: cannot start: {problem}', file=sys.stderr)  # noqa: T201
        return 1
    serving = {
        'host': settings.host,
        'port': settings.port,
        'log_level': settings.log_level,
        'log_format': settings.log_format,
    }
    with os.fdopen(answer_fd, 'wb') as answer:
        answer.write(json.dumps(serving).encode())
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""`chat-storage` command line: `serve` (the default) starts the HTTP server; `fsck`
checks the data directory against the metadata."""

import argparse
import sys

from api.logs import logging_config
from api.server import DEFAULT_APP, SERVER_ENV, SERVERS, ServerOptions, default_server, run
from api.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='chat-storage', description=__doc__)
    commands = parser.add_subparsers(dest='command')
    serve = commands.add_parser('serve', help='run the HTTP server (STORAGE_HOST:STORAGE_PORT)')
    serve.add_argument('--workers', type=int, default=1, help='worker processes')
    serve.add_argument(
        '--server',
        choices=SERVERS,
        default=default_server(),
        help=f'HTTP server (default: ${SERVER_ENV}, else granian)',
    )
    serve.add_argument(
        '--app', default=DEFAULT_APP, help='module:factory of the ASGI app (default: %(default)s)'
    )
    fsck = commands.add_parser('fsck', help='check the data directory against the metadata')
    fsck.add_argument('--repair', action='store_true', help='fix what needs no guess')
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f'chat-storage: {error}', file=sys.stderr)  # noqa: T201 - the one clear line
        return 2
    if args.command == 'fsck':
        # imported here: the serving process of a multi-process server stays small
        from api.fsck_cli import run_fsck  # noqa: PLC0415

        return run_fsck(settings, repair=args.repair)
    run(
        # `chat-storage` alone serves with the defaults
        getattr(args, 'server', default_server()),
        ServerOptions(
            app=getattr(args, 'app', DEFAULT_APP),
            host=settings.host,
            port=settings.port,
            workers=getattr(args, 'workers', 1),
            log_level=settings.log_level,
            # JSON lines in every worker; our middleware writes the access log
            log_config=logging_config(settings.log_level, settings.log_format),
        ),
    )
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
